"""Keeping outputs: ``download(prediction, "s3://...")`` against a floor that streams the same
bytes with obstore directly.

`python -m benchmarks.storage [--quick]` starts ``moto_server`` (the ``test`` extra) and a
loopback output host that serves outputs of 1, 20 and 200 MB (the emulator's own outputs are
a few bytes). Each copy runs in a fresh process, so its peak RSS growth is its own:

- `wavespeed-async`: ``client.download(prediction, "s3://bench/ours/")`` (the coordinator's
  claim, the parts, the SHA-256 and MD5s, the ETag and size check);
- `floor`: aiohttp streams the URL into ``obstore.put_async`` with the same part size and
  parts in flight, nothing checked.

Then 100 outputs of 2 MB, 16 at once. It prints a Markdown table (throughput, ratio to the
floor, peak RSS growth) and writes ``benchmarks/results/storage.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

MB = 1024 * 1024
BUCKET = "bench"
ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench-secret",
    "AWS_REGION": "us-east-1",
}
RESULTS = Path(__file__).resolve().parent / "results"
_BLOCK = (b"\x00\x00\x00\x18ftypmp42" + os.urandom(MB))[:MB]  # one MiB that sniffs as MP4


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _hwm_kb() -> int:
    """The process's peak resident set so far (VmHWM), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


# --- one copy, in a process of its own ----------------------------------------------------------


async def _ours(urls: list[str], concurrency: int) -> None:
    from wavespeed_async import AsyncWaveSpeed, Prediction, Status

    origin = urls[0].rsplit("/", 1)[0]
    async with AsyncWaveSpeed(api_key="bench", base_url=origin) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one(index: int, url: str) -> None:
            prediction = Prediction(
                id=f"bench{time.time_ns()}x{index}",
                model="bench/storage",
                status=Status.COMPLETED,
                raw_status="completed",
                outputs=(url,),
            )
            async with gate:
                await client.download(prediction, f"s3://{BUCKET}/ours/")

        await asyncio.gather(*(one(i, url) for i, url in enumerate(urls)))


async def _floor(urls: list[str], concurrency: int) -> None:
    import aiohttp
    import obstore
    from obstore.store import S3Store

    store = S3Store(
        BUCKET,
        endpoint=os.environ["AWS_ENDPOINT_URL"],
        client_options={"allow_http": True},
    )
    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as session:

        async def one(index: int, url: str) -> None:
            async with gate, session.get(url) as response:
                response.raise_for_status()
                await obstore.put_async(
                    store,
                    f"floor/{time.time_ns()}-{index}.mp4",
                    response.content.iter_chunked(256 * 1024),
                    chunk_size=5 * MB,
                    max_concurrency=4,
                )

        await asyncio.gather(*(one(i, url) for i, url in enumerate(urls)))
    await asyncio.sleep(0.05)  # as the client's aclose: obstore lets go before the exit


def _child(contender: str, urls: list[str], concurrency: int) -> dict[str, float]:
    run = _ours if contender == "wavespeed-async" else _floor
    warm = urls[0].rsplit("/", 2)[0] + "/1/warm.mp4"  # imports and the first connections
    asyncio.run(run([warm, warm], 2))
    before = _hwm_kb()
    started = time.perf_counter()
    asyncio.run(run(urls, concurrency))
    wall = time.perf_counter() - started
    return {"wall_s": wall, "rss_growth_mb": (_hwm_kb() - before) / 1024}


# --- the harness --------------------------------------------------------------------------------


@contextmanager
def _moto() -> Iterator[str]:
    executable = Path(sys.executable).with_name("moto_server")
    port = _free_port()
    process = subprocess.Popen(
        [str(executable), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def _origin() -> Iterator[str]:
    """An output host: ``/{megabytes}/{n}.mp4`` streams that many MiB, from one block."""
    from aiohttp import web

    async def serve(request: web.Request) -> web.StreamResponse:
        size = int(request.match_info["mb"]) * MB
        response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        response.content_length = size
        await response.prepare(request)
        for _ in range(size // MB):
            await response.write(_BLOCK)
        return response

    ready, stop = threading.Event(), threading.Event()
    port = _free_port()

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/{mb}/{name}", serve)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await asyncio.to_thread(stop.wait)
        await runner.cleanup()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    ready.wait(30)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        thread.join(30)


def _measure(contender: str, urls: list[str], concurrency: int, env: dict[str, str]) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.storage", "--child", contender,
         "--concurrency", str(concurrency), *urls],
        capture_output=True, text=True, env=env, timeout=900, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{contender} exited {done.returncode}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def run(quick: bool) -> list[dict[str, Any]]:
    """Every case for both contenders, floor first; the rows of the table."""
    import boto3  # type: ignore[import-untyped]

    cases = [(1, 1, 1), (20, 1, 1), (200, 1, 1), (2, 100, 16)]
    if quick:
        cases = [(1, 1, 1), (20, 1, 1), (2, 20, 16)]
    rows = []
    with _moto() as endpoint, _origin() as origin:
        env = {**os.environ, **ENV, "AWS_ENDPOINT_URL": endpoint}
        boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="bench", aws_secret_access_key="bench-secret",
        ).create_bucket(Bucket=BUCKET)  # fmt: skip
        for megabytes, count, concurrency in cases:
            urls = [f"{origin}/{megabytes}/{n}.mp4" for n in range(count)]
            names = ("floor", "wavespeed-async")
            figures = {name: _measure(name, urls, concurrency, env) for name in names}
            total = megabytes * count
            row: dict[str, Any] = {"case": f"{count} x {megabytes} MB, {concurrency} at once"}
            for name, measured in figures.items():
                row[name] = {**measured, "mb_per_s": total / measured["wall_s"]}
            row["ratio"] = figures["floor"]["wall_s"] / figures["wavespeed-async"]["wall_s"]
            rows.append(row)
            print(f"{row['case']}: {json.dumps(row)}", file=sys.stderr, flush=True)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """The table: throughput of each, ours as a share of the floor, peak RSS growth."""
    lines = [
        "| case | floor MB/s | wavespeed-async MB/s | ratio (>= 0.9) | floor RSS + MB"
        " | wavespeed-async RSS + MB (< 32 at 200 MB) |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        floor, ours = row["floor"], row["wavespeed-async"]
        lines.append(
            f"| {row['case']} | {floor['mb_per_s']:.0f} | {ours['mb_per_s']:.0f}"
            f" | {row['ratio']:.2f} | {floor['rss_growth_mb']:.1f} | {ours['rss_growth_mb']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the storage benchmark (or, with ``--child``, one measured copy)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.storage", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller cases, a smoke run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("urls", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.urls, args.concurrency)))
        return 0
    rows = run(args.quick)
    table = markdown(rows)
    out = RESULTS / ("quick" if args.quick else "")
    out.mkdir(parents=True, exist_ok=True)
    (out / "storage.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out / "storage.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
