"""``wavespeed-async batch FILE --redis URL`` as users run it on several machines: worker
subprocesses sharing one batch through a real redis-server, an emulator in its own process,
a worker killed with ``kill -9`` part-way, and ``--status``."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from wavespeed_async._coordination.redis import QueueItem, RedisBatchQueue, connect

from .redis_server import RedisServer
from .support import CLI, CLI_ENV, EmulatorProcess, free_port, run_cli, write_batch

pytestmark = pytest.mark.slow  # runs the CLI in subprocesses


@pytest.fixture
def long_emulator() -> Iterator[EmulatorProcess]:
    """A video takes 1.5 s: longer than the workers' --reclaim-after of 1 s."""
    emulator = EmulatorProcess(speed=20)
    yield emulator
    emulator.close()


def shared_args(
    emulator: EmulatorProcess | None, redis: str, tasks: Path, namespace: str, *extra: str
) -> list[str]:
    base_url = emulator.base_url if emulator else f"http://127.0.0.1:{free_port()}"
    return [
        "batch", str(tasks), "--redis", redis, "--namespace", namespace,
        "--base-url", base_url, "--poll-interval", "0.02", *extra,
    ]  # fmt: skip


def start_worker(args: list[str]) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAVESPEED_")}
    return subprocess.Popen(
        [*CLI, *args],
        env={**env, **CLI_ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished_lines(report: dict[str, Any]) -> list[int]:
    return [item["line"] for item in report["items"] if item["outcome"] in ("completed", "failed")]


def test_two_workers_share_one_batch_and_each_item_is_done_once(
    long_emulator: EmulatorProcess, redis_server: RedisServer, tmp_path: Path
) -> None:
    prompts = [*(f"a heron, take {n}" for n in range(7)), "no [fail]"]
    tasks, namespace = write_batch(tmp_path / "tasks.jsonl", prompts), uuid.uuid4().hex
    # Items outlast --reclaim-after: a live worker's renewals keep them from the other.
    args = shared_args(
        long_emulator, redis_server.url, tasks, namespace,
        "--concurrency", "2", "--reclaim-after", "1",
    )  # fmt: skip
    workers = [start_worker([*args, "--out", str(tmp_path / name), "--json"]) for name in "ab"]
    reports, codes = [], []
    for worker in workers:
        stdout, stderr = worker.communicate(timeout=60)
        assert "Traceback" not in stderr, stderr
        codes.append(worker.returncode)
        reports.append(json.loads(stdout))
    assert sorted(codes) == [0, 1]  # the one that took the failing item says so
    assert sum(report["failed"] for report in reports) == 1
    a, b = (finished_lines(report) for report in reports)
    assert a, "the first worker took no item"
    assert b, "the second worker took no item"
    assert sorted(a + b) == list(range(1, 9))  # every item once, by one worker
    created = long_emulator.created()
    assert sum(created.values()) == len(prompts)
    assert set(created.values()) == {1}
    saved = list((tmp_path / "a").glob("*.mp4")) + list((tmp_path / "b").glob("*.mp4"))
    assert len(saved) == len(prompts) - 1

    status = run_cli(*args, "--status", "--json", env=CLI_ENV)
    assert status.returncode == 0, status.stderr
    counts = json.loads(status.stdout)
    assert counts == {
        "batch": reports[0]["batch"], "total": 8, "enqueued": True,
        "pending": 0, "running": 0, "done": 7, "failed": 1,
    }  # fmt: skip


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_a_stopped_workers_items_are_reclaimed_without_duplicate_tasks(
    slow_emulator: EmulatorProcess, redis_server: RedisServer, tmp_path: Path, stop: signal.Signals
) -> None:
    prompts = [f"a lynx, take {n}" for n in range(12)]
    tasks, namespace = write_batch(tmp_path / "tasks.jsonl", prompts), uuid.uuid4().hex
    args = shared_args(
        slow_emulator, redis_server.url, tasks, namespace,
        "--concurrency", "3", "--reclaim-after", "1", "--out", str(tmp_path / "out"),
    )  # fmt: skip
    first = start_worker(args)
    assert first.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + 30
    while sum(": submitted " in line for line in seen) < 3:  # its lanes all hold a task
        assert time.monotonic() < deadline, "the first worker made no progress"
        line = first.stderr.readline()
        assert line, first.communicate()
        seen.append(line)
    first.send_signal(stop)
    _, rest = first.communicate(timeout=30)
    if stop == signal.SIGINT:  # stops claiming; what it holds is left for another worker
        assert first.returncode == 130, rest
        last = rest.strip().splitlines()[-1]
        assert re.fullmatch(
            r"interrupted: \d+ items finished by this worker; [1-3] in flight are claimed by"
            r" another worker after 1 s \(or by this command run again\)",
            last,
        ), rest
        assert "Traceback" not in rest
    else:
        assert first.returncode == -signal.SIGKILL
    held = {int(m[1]) for line in seen if (m := re.search(r"line (\d+): submitted", line))}
    finished = {int(m[1]) for line in seen if (m := re.search(r"line (\d+): completed", line))}

    second = run_cli(*args, "--json", env=CLI_ENV)
    assert second.returncode == 0, second.stderr
    report = json.loads(second.stdout)
    assert report["queue"] == {"pending": 0, "running": 0, "done": 12, "failed": 0}
    assert held - finished <= set(finished_lines(report))  # reclaimed from the dead worker
    created = slow_emulator.created()
    assert sum(created.values()) == len(prompts)
    assert set(created.values()) == {1}  # the reclaimed items resumed their tasks


def test_an_item_whose_wait_ran_out_is_resumed_through_its_key_not_resubmitted(
    slow_emulator: EmulatorProcess, redis_server: RedisServer, tmp_path: Path
) -> None:
    tasks = write_batch(tmp_path / "tasks.jsonl", ["an owl", "a wren"])
    args = shared_args(
        slow_emulator, redis_server.url, tasks, uuid.uuid4().hex, "--timeout", "0.1",
        "--reclaim-after", "0.5", "--out", str(tmp_path / "out"), "--json",
    )  # fmt: skip
    done = run_cli(*args, env=CLI_ENV)  # each video takes 0.5 s: the first waits run out
    assert done.returncode == 0, done.stderr
    assert re.search(
        r"line 1: prediction \w+ not finished after 0.1s .*; the item is claimed again after"
        r" 0.5 s",
        done.stderr,
    ), done.stderr
    report = json.loads(done.stdout)
    assert report["completed"] == 2
    assert report["queue"] == {"pending": 0, "running": 0, "done": 2, "failed": 0}
    assert set(slow_emulator.created().values()) == {1}  # waited again, not sent again
    assert len(slow_emulator.created()) == 2


def test_status_of_a_batch_no_worker_started_counts_every_item_pending(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    tasks = write_batch(tmp_path / "tasks.jsonl", ["a", "b", "c"])
    args = shared_args(None, redis_server.url, tasks, uuid.uuid4().hex, "--status")
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    assert re.fullmatch(
        rf"batch [0-9a-f]{{32}} of {re.escape(str(tasks))}: 3 items: 3 pending, 0 running,"
        r" 0 done, 0 failed \(no worker has started it yet\)",
        line,
    )


@pytest.mark.parametrize(
    ("extra", "env", "message"),
    [
        (
            ["--journal", "j.jsonl"],
            CLI_ENV,
            "--journal='j.jsonl' is invalid: must be left out with",
        ),
        (["--reclaim-after", "0"], CLI_ENV, "--reclaim-after=0.0 is invalid: must be a number"),
        ([], {}, "--redis='the embedded emulator' is invalid: must be used with a shared API"),
    ],
    ids=["journal", "reclaim-after", "embedded-emulator"],
)
def test_options_a_shared_batch_cannot_take_are_refused_before_anything_starts(
    tmp_path: Path, extra: list[str], env: dict[str, str], message: str
) -> None:
    tasks = write_batch(tmp_path / "tasks.jsonl", ["a"])
    redis = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens: it is never reached
    args = ["batch", str(tasks), "--redis", redis, *extra]
    if env:
        args += ["--base-url", f"http://127.0.0.1:{free_port()}"]
    done = run_cli(*args, env=env)
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: {message}"), done.stderr


def test_status_needs_redis(tmp_path: Path) -> None:
    tasks = write_batch(tmp_path / "tasks.jsonl", ["a"])
    done = run_cli("batch", str(tasks), "--status")
    assert done.returncode == 1
    assert done.stderr.startswith("error: --status=True is invalid: must be given with --redis")


def test_unreachable_redis_is_an_error_and_nothing_is_submitted(
    slow_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    tasks = write_batch(tmp_path / "tasks.jsonl", ["a", "b"])
    redis = f"redis://127.0.0.1:{free_port()}/0"
    done = run_cli(*shared_args(slow_emulator, redis, tasks, "ns"), env=CLI_ENV)
    assert done.returncode == 1
    assert done.stderr.startswith("error: Redis cannot be reached: "), done.stderr
    assert "Traceback" not in done.stderr
    assert sum(slow_emulator.created().values()) == 0


# --- the heartbeat, on the queue ----------------------------------------------------------------


@pytest.mark.anyio
async def test_touch_keeps_an_item_in_hand_but_never_takes_back_a_reclaimed_one(
    redis_server: RedisServer,
) -> None:
    client = connect(redis_server.url)
    namespace = uuid.uuid4().hex
    holder = RedisBatchQueue(client, namespace=namespace, consumer="holder")
    taker = RedisBatchQueue(client, namespace=namespace, consumer="taker", idle_timeout=0.5)
    try:
        await holder.enqueue_once("b", [{"prompt": "x"}])
        [item] = await holder.claim("b")
        await anyio.sleep(0.6)  # idle past the taker's timeout...
        assert await holder.touch("b", [item]) == 1  # ...but renewed: not the taker's
        assert await taker.claim("b") == []
        reclaimed: list[QueueItem] = []
        with anyio.fail_after(10):
            while not reclaimed:  # the holder is silent now: it goes to the taker
                await anyio.sleep(0.05)
                reclaimed = await taker.claim("b")
        assert [entry.entry_id for entry in reclaimed] == [item.entry_id]
        assert await holder.touch("b", [item]) == 0  # gone: the holder does not take it back
        [pending] = await client.xpending_range(
            f"{{{namespace}}}:batch:b:stream", "workers", "-", "+", 1
        )
        assert pending["consumer"] == b"taker"
    finally:
        await client.aclose()


def test_a_local_image_is_refused_in_a_shared_batch(tmp_path: Path) -> None:
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps({"edit_image": {"prompt": "snow", "image": "photo.png"}}) + "\n")
    redis = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens: it is never reached
    base_url = f"http://127.0.0.1:{free_port()}"
    done = run_cli("batch", str(tasks), "--redis", redis, "--base-url", base_url, env=CLI_ENV)
    assert done.returncode == 1
    message = done.stderr.strip()  # one line; a long path is shown cut in the middle
    assert message.startswith(f"error: image={str(tmp_path)[:20]!r}"[:-1]), message
    assert message.endswith(
        "photo.png' is invalid: must be a URL or a data URI with --redis, not a local file"
    ) or message.endswith(
        " is invalid: must be a URL or a data URI with --redis, not a local file"
    ), message
    assert "\n" not in message
