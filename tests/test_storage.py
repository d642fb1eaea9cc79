"""Keeping outputs in object storage: streamed, whole or nothing, verified, once, typed errors.

Every test writes to a real S3 server (moto_server, see ``s3_server.py``); outputs come from
the emulator or from :class:`Origin`, a loopback output host that serves large files, cuts a
stream mid-way or answers as an expired object does.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from wavespeed_async import (
    Batch,
    BucketNotFound,
    ChecksumMismatch,
    InvalidInput,
    OutputExpired,
    Prediction,
    Status,
    StorageAccessDenied,
    StorageCredentialsMissing,
    StorageError,
    StorageOptions,
    TextToVideo,
    TransportError,
    WaveSpeedError,
)
from wavespeed_async._storage import parse_destination
from wavespeed_async._storage.url import LocalDestination, StoreDestination
from wavespeed_async.emulator import Clock, Emulator
from wavespeed_async.redis import RedisCoordinator

from .redis_server import RedisServer
from .s3_server import ACCESS_KEY, SECRET, S3Gate, S3Server
from .support import SECRET_KEY, client_for, run_cli, serve

pytestmark = pytest.mark.anyio

MB = 1024 * 1024
MP4_HEAD = b"\x00\x00\x00\x18ftypmp42"


def mp4(size: int) -> bytes:
    """``size`` bytes that sniff as an MP4, different in every part (so a swap would show)."""
    blocks = (hashlib.sha256(str(n).encode()).digest() for n in range(size // 32 + 1))
    return (MP4_HEAD + b"".join(blocks))[:size]


def completed(
    *outputs: str, prediction_id: str = "task_1", created_at: dt.datetime | None = None
) -> Prediction:
    return Prediction(
        id=prediction_id,
        model="wavespeed-ai/wan-2.2/t2v-1080p",
        status=Status.COMPLETED,
        raw_status="completed",
        outputs=outputs,
        created_at=created_at,
    )


class Origin:
    """An output host: routes a test scripts, and a count of the requests of each path."""

    def __init__(self) -> None:
        self.routes: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] = {}
        self.hits: Counter[str] = Counter()
        self.authorizations: list[str | None] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits[request.path] += 1
        self.authorizations.append(request.headers.get("Authorization"))
        route = self.routes.get(request.path)
        if route is None:
            return web.Response(status=404, text="no such file")
        return await route(request)

    def file(self, path: str, body: bytes, *, cut_after: int | None = None) -> str:
        """Serve ``body`` at ``path`` in 256 KB writes; with ``cut_after``, reset mid-way."""

        async def answer(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
            response.content_length = len(body)
            await response.prepare(request)
            for start in range(0, len(body), 256 * 1024):
                if cut_after is not None and start >= cut_after:
                    assert request.transport is not None
                    request.transport.abort()
                    return response
                await response.write(body[start : start + 256 * 1024])
            return response

        self.routes[path] = answer
        return self.url + path

    def expired(self, path: str) -> str:
        """Answer at ``path`` as storage answers for an expired object (the emulator's form)."""

        async def answer(request: web.Request) -> web.StreamResponse:
            body = "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
            date = email.utils.format_datetime(dt.datetime.now(dt.timezone.utc), usegmt=True)
            return web.Response(
                status=403, text=body, content_type="application/xml", headers={"Date": date}
            )

        self.routes[path] = answer
        return self.url + path


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    host = Origin()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", host.handle)
    runner, host.url = await serve(app)
    try:
        yield host
    finally:
        await runner.cleanup()


def objects(server: S3Server, bucket: str) -> list[str]:
    listing = server.client().list_objects_v2(Bucket=bucket)
    return [item["Key"] for item in listing.get("Contents", [])]


def pending_uploads(server: S3Server, bucket: str) -> list[str]:
    answer = server.client().list_multipart_uploads(Bucket=bucket)
    return [upload["Key"] for upload in answer.get("Uploads", [])]


# --- destinations -------------------------------------------------------------------------------


def test_destinations_are_folders_or_store_urls() -> None:
    assert parse_destination("s3://media/runs/2") == StoreDestination("s3", "media", "runs/2/")
    assert parse_destination("gs://media") == StoreDestination("gs", "media", "")
    assert parse_destination("az://box/a/b/") == StoreDestination("az", "box", "a/b/")
    assert parse_destination("videos/") == LocalDestination(Path("videos"))
    assert parse_destination(Path("s3:/x")) == LocalDestination(Path("s3:/x"))  # a Path is a path
    assert parse_destination("file:///srv/out") == LocalDestination(Path("/srv/out"))


@pytest.mark.parametrize(
    "dest",
    ["ftp://host/x/", "http://bucket/x", "s3:bucket/x", "s3://", "s3://Bad_Bucket!/x",
     "s3://key:secret@bucket/x", "s3://bucket/x?token=1", "s3://bucket/../x", ""],
)  # fmt: skip
async def test_a_bad_destination_is_refused_naming_it_and_the_allowed_forms(
    frozen: Emulator, dest: str
) -> None:
    async with client_for(frozen) as client:
        with pytest.raises(InvalidInput) as info:
            await client.check_destination(dest)
        with pytest.raises(InvalidInput):
            await client.download(completed("https://cdn.example/x.mp4"), dest)
        with pytest.raises(InvalidInput):
            Batch(client, [TextToVideo("a fox")], out=dest)
    assert frozen.requests == []
    assert "s3://bucket/prefix/" in str(info.value)
    assert "secret" not in str(info.value)


# --- the copy -----------------------------------------------------------------------------------


async def test_outputs_stored_in_s3_are_byte_identical_to_a_local_download_with_metadata(
    emulator: Emulator, s3_env: S3Server, tmp_path: Path
) -> None:
    bucket = s3_env.bucket()
    async with client_for(emulator) as client:
        video = await client.text_to_video("a fox")
        urls = await client.download(video, f"s3://{bucket}/runs/")
        [path] = await client.download(video, tmp_path)
    key = f"runs/{video.id}-0.mp4"
    assert urls == [f"s3://{bucket}/{key}"]
    stored = s3_env.client().get_object(Bucket=bucket, Key=key)
    assert stored["Body"].read() == path.read_bytes()
    assert stored["ContentType"] == "video/mp4"
    assert stored["Metadata"] == {
        "prediction-id": video.id,
        "model": video.model,
        "output-index": "0",
    }


async def test_a_large_output_streams_in_parts_and_is_verified(
    frozen: Emulator, origin: Origin, s3_env: S3Server
) -> None:
    body = mp4(12 * MB + 123)
    url = origin.file("/big.mp4", body)
    bucket = s3_env.bucket()
    async with client_for(frozen) as client:
        [stored] = await client.download(completed(url), f"s3://{bucket}/")
    assert stored == f"s3://{bucket}/task_1-0.mp4"
    head = s3_env.client().head_object(Bucket=bucket, Key="task_1-0.mp4")
    assert head["ContentLength"] == len(body)
    assert head["ETag"].strip('"').endswith("-3")  # three 5 MiB parts
    data = s3_env.client().get_object(Bucket=bucket, Key="task_1-0.mp4")["Body"].read()
    assert hashlib.sha256(data).digest() == hashlib.sha256(body).digest()
    assert origin.authorizations == [None]  # the API key never went to the output host


# --- typed errors naming the destination --------------------------------------------------------


async def test_a_missing_bucket_is_bucket_not_found_naming_the_destination(
    frozen: Emulator, origin: Origin, s3_env: S3Server
) -> None:
    dest = "s3://no-such-bucket-here/runs/"
    async with client_for(frozen) as client:
        with pytest.raises(BucketNotFound) as before:
            await client.check_destination(dest)
        with pytest.raises(BucketNotFound) as during:
            await client.download(completed(origin.file("/a.mp4", mp4(1000))), dest)
    assert before.value.destination == dest
    assert dest in str(during.value)
    assert during.value.prediction_id == "task_1"


async def test_missing_credentials_are_a_typed_error_before_anything_is_fetched(
    frozen: Emulator, origin: Origin, s3_env: S3Server, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:  # fmt: skip
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.aws either
    url = origin.file("/a.mp4", mp4(1000))
    async with client_for(frozen) as client:
        with pytest.raises(StorageCredentialsMissing) as info:
            await client.download(completed(url), "s3://media/runs/")
    assert info.value.destination == "s3://media/runs/"
    assert "AWS_ACCESS_KEY_ID" in str(info.value)
    assert origin.hits == {}


async def test_a_read_only_destination_is_access_denied_and_leaves_nothing(
    frozen: Emulator, origin: Origin, s3_env: S3Server, s3_gate: S3Gate
) -> None:
    bucket = s3_env.bucket()
    s3_gate.read_only = True
    options = StorageOptions(endpoint=s3_gate.url)
    async with client_for(frozen, storage=options) as client:
        with pytest.raises(StorageAccessDenied) as info:
            await client.download(completed(origin.file("/a.mp4", mp4(1000))), f"s3://{bucket}/")
    assert info.value.destination == f"s3://{bucket}/"
    assert "AccessDenied" in str(info.value)
    assert objects(s3_env, bucket) == []


# --- whole or nothing ---------------------------------------------------------------------------


async def test_a_reset_from_the_output_host_mid_stream_leaves_no_object_and_no_pending_upload(
    frozen: Emulator, origin: Origin, s3_env: S3Server
) -> None:
    url = origin.file("/cut.mp4", mp4(16 * MB), cut_after=11 * MB)  # two parts were sent
    bucket = s3_env.bucket()
    async with client_for(frozen) as client:
        with pytest.raises(TransportError) as info:
            await client.download(completed(url), f"s3://{bucket}/")
    assert info.value.prediction_id == "task_1"
    assert objects(s3_env, bucket) == []
    assert pending_uploads(s3_env, bucket) == []  # the multipart upload was aborted


async def test_a_store_that_stops_mid_upload_raises_a_typed_error_and_no_object_appears(
    frozen: Emulator, origin: Origin, s3_env: S3Server, s3_gate: S3Gate
) -> None:
    bucket = s3_env.bucket()
    url = origin.file("/big.mp4", mp4(16 * MB))
    s3_gate.cut_after = 7 * MB  # inside the second part
    options = StorageOptions(endpoint=s3_gate.url, max_retries=1, retry_timeout=5)
    async with client_for(frozen, storage=options) as client:
        with pytest.raises(StorageError) as info:
            await client.download(completed(url), f"s3://{bucket}/out/")
    assert s3_gate.cut.is_set()
    assert info.value.destination == f"s3://{bucket}/out/"
    assert objects(s3_env, bucket) == []  # asked of the server itself, past the dead gate


async def test_a_corrupted_upload_is_a_checksum_mismatch_and_the_object_is_removed(
    frozen: Emulator, origin: Origin, s3_env: S3Server, s3_gate: S3Gate
) -> None:
    bucket = s3_env.bucket()
    url = origin.file("/big.mp4", mp4(8 * MB))
    s3_gate.corrupt_at = 6 * MB  # a byte of the second part flips on its way to the store
    async with client_for(frozen, storage=StorageOptions(endpoint=s3_gate.url)) as client:
        with pytest.raises(ChecksumMismatch) as info:
            await client.download(completed(url), f"s3://{bucket}/")
    assert "ETag" in str(info.value)
    assert objects(s3_env, bucket) == []


# --- once ---------------------------------------------------------------------------------------


async def test_concurrent_downloads_of_one_prediction_copy_it_once(
    frozen: Emulator, origin: Origin, s3_env: S3Server
) -> None:
    bucket = s3_env.bucket()
    prediction = completed(origin.file("/a.mp4", mp4(6 * MB)), origin.file("/b.mp4", mp4(1000)))
    async with client_for(frozen) as client:
        answers = await asyncio.gather(
            *(client.download(prediction, f"s3://{bucket}/x/") for _ in range(5))
        )
    assert origin.hits == {"/a.mp4": 1, "/b.mp4": 1}
    assert all(answer == answers[0] for answer in answers)
    assert sorted(objects(s3_env, bucket)) == ["x/task_1-0.mp4", "x/task_1-1.mp4"]


async def test_workers_sharing_redis_copy_once_and_the_others_get_the_stored_location(
    frozen: Emulator, origin: Origin, s3_env: S3Server, redis_server: RedisServer
) -> None:
    bucket = s3_env.bucket()
    prediction = completed(origin.file("/a.mp4", mp4(6 * MB)), prediction_id="shared_1")
    namespace = f"storage-{bucket}"
    workers = [
        client_for(frozen, coordinator=RedisCoordinator(redis_server.url, namespace=namespace))
        for _ in range(3)
    ]
    try:
        for worker in workers:
            await worker.__aenter__()
        answers = await asyncio.gather(
            *(worker.download(prediction, f"s3://{bucket}/") for worker in workers)
        )
    finally:
        for worker in workers:
            await worker.aclose()
    assert origin.hits == {"/a.mp4": 1}
    assert answers == [[f"s3://{bucket}/shared_1-0.mp4"]] * 3


async def test_a_resumed_batch_does_not_copy_again(
    emulator: Emulator, s3_env: S3Server, tmp_path: Path
) -> None:
    bucket = s3_env.bucket()
    journal = tmp_path / "run.jsonl"
    items = [TextToVideo("a fox"), TextToVideo("an owl")]
    async with client_for(emulator) as client:
        first = [r async for r in Batch(client, items, journal=journal, out=f"s3://{bucket}/b/")]
        fetched = sum(1 for r in emulator.requests if r.path.startswith("/outputs/"))
        again = [r async for r in Batch(client, items, journal=journal, out=f"s3://{bucket}/b/")]
    assert fetched == 2
    assert sum(1 for r in emulator.requests if r.path.startswith("/outputs/")) == 2
    assert sorted(f for r in again for f in r.files) == sorted(f for r in first for f in r.files)
    stored = [f for r in again for f in r.files]
    assert all(isinstance(f, str) and f.startswith(f"s3://{bucket}/b/") for f in stored)
    recorded = [json.loads(line) for line in journal.read_text().splitlines()]
    assert {f for record in recorded for f in record.get("files", [])} == {
        f for r in first for f in r.files
    }


# --- expiry -------------------------------------------------------------------------------------


@pytest.mark.parametrize("to_store", [False, True])
async def test_an_output_past_the_retention_is_output_expired_naming_the_prediction_and_age(
    frozen: Emulator, origin: Origin, s3_env: S3Server, tmp_path: Path, to_store: bool
) -> None:
    created = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=8)
    prediction = completed(origin.expired("/old.mp4"), prediction_id="old_1", created_at=created)
    dest = f"s3://{s3_env.bucket()}/" if to_store else str(tmp_path)
    async with client_for(frozen) as client:
        with pytest.raises(OutputExpired) as info:
            await client.download(prediction, dest)
    assert info.value.prediction_id == "old_1"
    # The host's Date has whole seconds: the age may be a second short of 8 days.
    assert dt.timedelta(days=8, seconds=-2) <= info.value.age < dt.timedelta(days=8, minutes=5)
    assert "old_1" in str(info.value)
    assert "8.0 days" in str(info.value)


async def test_an_output_the_emulator_expired_is_output_expired_and_nothing_is_stored(
    s3_env: S3Server,
) -> None:
    bucket = s3_env.bucket()
    clock = Clock(speed=1000)  # its created_at and Date headers follow advance()
    emulator = Emulator(clock=clock, wall_clock=clock.wall_clock())
    async with emulator, client_for(emulator) as client:
        video = await client.text_to_video("a fox")
        emulator.advance(8 * 24 * 3600)  # past the platform's 7 days
        with pytest.raises(OutputExpired) as info:
            await client.download(video, f"s3://{bucket}/late/")
    assert info.value.prediction_id == video.id
    assert dt.timedelta(days=8) <= info.value.age < dt.timedelta(days=8, hours=1)
    assert objects(s3_env, bucket) == []
    assert pending_uploads(s3_env, bucket) == []


async def test_a_recent_output_that_is_refused_is_not_called_expired(
    frozen: Emulator, origin: Origin, tmp_path: Path
) -> None:
    prediction = completed(origin.expired("/new.mp4"), created_at=dt.datetime.now(dt.timezone.utc))
    async with client_for(frozen) as client:
        with pytest.raises(WaveSpeedError, match="HTTP 403") as info:
            await client.download(prediction, tmp_path)
    assert not isinstance(info.value, OutputExpired)


# --- credentials --------------------------------------------------------------------------------


async def test_no_credential_reaches_the_wrong_host_or_a_repr_error_or_log(
    frozen: Emulator, origin: Origin, s3_env: S3Server, s3_gate: S3Gate,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    bucket = s3_env.bucket()
    options = StorageOptions(
        endpoint=s3_gate.url, access_key_id=ACCESS_KEY, secret_access_key=SECRET
    )
    assert SECRET not in repr(options)
    assert ACCESS_KEY not in repr(options)
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    async with client_for(frozen, storage=options) as client:
        await client.download(completed(origin.file("/a.mp4", mp4(1000))), f"s3://{bucket}/")
        attempts = [
            (completed(origin.file("/b.mp4", mp4(1000))), f"s3://{bucket}-missing/"),
            (completed(origin.expired("/gone.mp4"), prediction_id="t2"), f"s3://{bucket}/"),
        ]
        for prediction, dest in attempts:
            try:
                await client.download(prediction, dest)
            except WaveSpeedError as exc:
                errors.append(exc)
        s3_gate.read_only = True
        with pytest.raises(StorageAccessDenied) as denied:
            await client.check_destination(f"s3://{bucket}/")
        errors.append(denied.value)
        assert SECRET not in repr(client)
        assert SECRET not in repr(client._storage)
    assert len(errors) == 3
    texts = [f"{e} {e!r} {e.__cause__!r} {e.__context__!r}" for e in errors]
    assert not [text for text in texts if SECRET in text]
    assert SECRET not in caplog.text
    assert SECRET_KEY.encode() not in s3_gate.sent  # the API key never went to the store
    assert SECRET.encode() not in s3_gate.sent  # SigV4: the secret signs, it is never sent
    assert set(origin.authorizations) == {None}


# --- the command line ---------------------------------------------------------------------------


@pytest.mark.slow
def test_the_cli_out_s3_stores_what_a_local_out_saves(s3_env: S3Server, tmp_path: Path) -> None:
    bucket = s3_env.bucket()
    env = {name: value for name, value in os.environ.items() if name.startswith("AWS_")}
    stored = run_cli("text-to-video", "a fox", "--out", f"s3://{bucket}/cli/", env=env)
    assert stored.returncode == 0, stored.stderr
    [url] = stored.stdout.splitlines()
    local = run_cli("text-to-video", "a fox", "--out", str(tmp_path), env=env)
    assert local.returncode == 0, local.stderr
    key = url.removeprefix(f"s3://{bucket}/")
    assert key.startswith("cli/")
    assert key.endswith("-0.mp4")
    data = s3_env.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    assert data == Path(local.stdout.strip()).read_bytes()


@pytest.mark.slow
def test_the_cli_refuses_a_missing_bucket_before_submitting(s3_env: S3Server) -> None:
    env = {name: value for name, value in os.environ.items() if name.startswith("AWS_")}
    done = run_cli("text-to-video", "a fox", "--out", "s3://no-such-bucket-cli/", env=env)
    assert done.returncode != 0
    assert "no-such-bucket-cli" in done.stderr
    assert "bucket does not exist" in done.stderr
    assert "submitted" not in done.stderr
