"""Image inputs (URL, data URI, base64, path, bytes) and saving outputs, against real servers."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from wavespeed_async import (
    InvalidInput,
    Prediction,
    PredictionFailed,
    Status,
    WaveSpeedError,
)
from wavespeed_async._http.files import MAX_UPLOAD, output_suffix
from wavespeed_async.emulator import Emulator
from wavespeed_async.emulator._media import png
from wavespeed_async.emulator._uploads import UploadSlot

from .support import client_for

pytestmark = pytest.mark.anyio

IMAGE_URL = "https://example.com/in.png"

PNG = png(4, 4, (200, 10, 10))
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(64)
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(64)
GIF = b"GIF89a\x01\x00\x01\x00" + bytes(64)
MP4 = b"\x00\x00\x00\x18ftypisom" + bytes(64)


def stored(emu: Emulator) -> list[UploadSlot]:
    return list(emu.state.uploads.slots.values())


def media_requests(emu: Emulator) -> list[tuple[str, str]]:
    return [
        (r.method, r.path.split("/")[3] if r.is_api else r.path.split("/")[2])
        for r in emu.requests
        if r.path.startswith(("/api/v3/media", "/storage/"))
    ]


# --- local images are uploaded (ticket, then PUT) -----------------------------------------------


@pytest.mark.parametrize(
    ("make_input", "data", "filename", "content_type"),
    [
        (lambda tmp: PNG, PNG, "upload.png", "image/png"),
        (lambda tmp: tmp / "photo.jpg", JPEG, "photo.jpg", "image/jpeg"),
        (lambda tmp: str(tmp / "photo.webp"), WEBP, "photo.webp", "image/webp"),
        # The bytes decide the type, whatever the name says.
        (lambda tmp: tmp / "actually-a-gif.png", GIF, "actually-a-gif.png", "image/gif"),
    ],
    ids=["bytes", "path", "str-path", "misnamed-file"],
)
async def test_a_local_image_is_uploaded_and_its_url_sent(
    emulator: Emulator,
    tmp_path: Path,
    make_input: Callable[[Path], Any],
    data: bytes,
    filename: str,
    content_type: str,
) -> None:
    image = make_input(tmp_path)
    if not isinstance(image, bytes):
        Path(image).write_bytes(data)
    async with client_for(emulator) as client:
        edited = await client.edit_image("make it snow", image=image)
    [slot] = stored(emulator)
    assert (slot.data, slot.filename, slot.content_type) == (data, filename, content_type)
    sent = emulator.tasks[edited.id].input["image"]
    assert sent.endswith(f"/storage/files/{slot.token}/{filename}")
    assert media_requests(emulator) == [("POST", "media"), ("PUT", "upload")]
    submit = next(i for i, r in enumerate(emulator.requests) if r.path.endswith("/edit"))
    put = next(i for i, r in enumerate(emulator.requests) if r.method == "PUT")
    assert put < submit  # the file is in place before the task that reads it exists
    assert emulator.auth_leaks() == []


async def test_upload_returns_a_url_that_serves_the_bytes(
    emulator: Emulator, tmp_path: Path
) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(MP4)
    async with client_for(emulator) as client:
        url = await client.upload(clip)
        named = await client.upload(PNG, filename="mine.png")
        async with aiohttp.ClientSession() as session, session.get(url) as answer:
            served = await answer.read()
    assert served == MP4
    assert [(s.filename, s.content_type) for s in stored(emulator)] == [
        ("clip.mp4", "video/mp4"),
        ("mine.png", "image/png"),
    ]
    assert named.endswith("/mine.png")
    assert emulator.auth_leaks() == []


async def test_inline_sends_a_data_uri_and_uploads_nothing(emulator: Emulator) -> None:
    async with client_for(emulator) as client:
        edited = await client.edit_image("make it snow", image=JPEG, inline=True)
    sent = emulator.tasks[edited.id].input["image"]
    assert sent == "data:image/jpeg;base64," + base64.b64encode(JPEG).decode()
    assert media_requests(emulator) == []


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        (IMAGE_URL, IMAGE_URL),
        ("HTTP://example.com/in.png", "HTTP://example.com/in.png"),
        (f"data:image/png;base64,{base64.b64encode(PNG).decode()}", None),
        (base64.b64encode(GIF).decode(), f"data:image/gif;base64,{base64.b64encode(GIF).decode()}"),
        (
            base64.encodebytes(PNG).decode(),
            f"data:image/png;base64,{base64.b64encode(PNG).decode()}",
        ),
    ],
    ids=["url", "url-upper-case-scheme", "data-uri", "bare-base64", "wrapped-base64"],
)
async def test_remote_and_inline_images_are_sent_without_an_upload(
    emulator: Emulator, given: str, sent: str | None
) -> None:
    async with client_for(emulator) as client:
        edited = await client.edit_image("make it snow", image=given)
    assert emulator.tasks[edited.id].input["image"] == (sent or given)
    assert media_requests(emulator) == []


# --- bad inputs never reach the network ---------------------------------------------------------


def _file(name: str, data: bytes) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        (tmp / name).write_bytes(data)
        return tmp / name

    return make


@pytest.mark.parametrize(
    ("make_input", "allowed"),
    [
        (lambda tmp: b"", "non-empty"),
        (lambda tmp: b"just some text", "PNG, JPEG, WebP or GIF"),
        (lambda tmp: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3", "PNG, JPEG, WebP or GIF"),
        (lambda tmp: MP4, "PNG, JPEG, WebP or GIF"),
        (_file("notes.txt", b"hello"), "PNG, JPEG, WebP or GIF"),
        (_file("scan.pdf", b"%PDF-1.7"), "PNG, JPEG, WebP or GIF"),
        (_file("empty.png", b""), "non-empty"),
        (lambda tmp: tmp / "missing.png", "an existing file"),
        (lambda tmp: tmp, "an existing file"),  # a directory
        (lambda tmp: str(tmp / "missing.png"), "an existing local file"),
        (lambda tmp: "ftp://example.com/in.png", "http(s) URL"),
        (lambda tmp: "file:///etc/passwd", "http(s) URL"),
        (lambda tmp: "javascript:alert(1)", "http(s) URL"),
        (lambda tmp: "https://", "http(s) URL"),
        (lambda tmp: "not an image at all", "http(s) URL"),
        (lambda tmp: "aGVsbG8gd29ybGQ=", "http(s) URL"),  # base64, but of text
        (lambda tmp: "data:text/html;base64,PGI+aGk8L2I+", "data:image/"),
        (lambda tmp: "data:image/png;base64,aGVsbG8=", "data:image/"),  # not PNG bytes
        (lambda tmp: "data:image/png,rawbytes", "data:image/"),
        (lambda tmp: "   ", "http(s) URL"),
        (lambda tmp: 42, "http(s) URL"),
        (lambda tmp: None, "http(s) URL"),
    ],
)
async def test_unusable_images_are_refused_before_any_request(
    tmp_path: Path, make_input: Callable[[Path], Any], allowed: str
) -> None:
    async with Emulator(speed=0) as emu, client_for(emu) as client:
        with pytest.raises(InvalidInput) as info:
            await client.submit_edit_image("make it snow", image=make_input(tmp_path))
        assert emu.requests == []
    assert info.value.field == "image"
    assert allowed in info.value.allowed


async def test_files_over_200_mb_are_refused_before_any_request(tmp_path: Path) -> None:
    huge = tmp_path / "huge.png"
    with huge.open("wb") as file:
        file.write(PNG)
        file.truncate(MAX_UPLOAD + 1)  # sparse: nothing is really written
    async with Emulator(speed=0) as emu, client_for(emu) as client:
        with pytest.raises(InvalidInput, match="200 MB") as info:
            await client.edit_image("make it snow", image=huge)
        with pytest.raises(InvalidInput, match="200 MB"):
            await client.upload(huge)
        assert emu.requests == []
    assert info.value.field == "image"


async def test_a_bad_prompt_with_a_local_image_uploads_nothing() -> None:
    async with Emulator(speed=0) as emu, client_for(emu) as client:
        with pytest.raises(InvalidInput) as info:
            await client.edit_image("x" * 121, image=PNG)
        assert emu.requests == []
    assert info.value.field == "prompt"


# --- outputs are saved under our names, inside the directory, atomically -----------------------


def completed(*outputs: str, prediction_id: str = "task_1") -> Prediction:
    return Prediction(
        id=prediction_id, status=Status.COMPLETED, raw_status="completed", outputs=outputs
    )


class HostileCDN:
    """Serves whatever a test scripts, at any path, and records every request's headers."""

    def __init__(self) -> None:
        self.routes: dict[str, web.Response | Callable[[web.Request], Any]] = {}
        self.authorizations: list[str | None] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.authorizations.append(request.headers.get("Authorization"))
        answer = self.routes.get(request.path_qs) or self.routes.get(request.raw_path)
        if answer is None:
            return web.Response(status=404, text="no such file")
        if callable(answer):
            result: web.StreamResponse = await answer(request)
            return result
        return answer


@pytest.fixture
async def cdn() -> AsyncIterator[HostileCDN]:
    server = HostileCDN()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    server.url = f"http://{host}:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()


async def test_hostile_urls_types_and_names_never_choose_the_file_name(
    emulator: Emulator, cdn: HostileCDN, tmp_path: Path
) -> None:
    html = b"<html><script>alert(1)</script></html>"
    cdn.routes = {
        "/files/..%2F..%2Fx.sh": web.Response(body=b"#!/bin/sh\nrm -rf ~\n"),
        "/render.php?name=evil.png": web.Response(body=b"plain", content_type="text/plain"),
        "/pic.png": web.Response(body=html, content_type="text/html"),
        "/real.gif": web.Response(body=PNG, content_type="text/html"),  # the bytes decide
        "/attachment": web.Response(
            body=JPEG,
            headers={"Content-Disposition": 'attachment; filename="../../evil.sh"'},
        ),
        "/stream": web.Response(body=b"\x00" * 32, content_type="video/webm"),
        "/clip.MOV": web.Response(body=b"\x00" * 32),  # no type declared: the URL's suffix
    }
    outputs = [cdn.url + path for path in cdn.routes]
    out = tmp_path / "out"
    async with client_for(emulator) as client:
        paths = await client.download(completed(*outputs), out)
    assert [p.name for p in paths] == [
        "task_1-0.bin",
        "task_1-1.bin",
        "task_1-2.bin",
        "task_1-3.png",
        "task_1-4.jpg",
        "task_1-5.webm",
        "task_1-6.mov",
    ]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # nothing landed beside it
    assert paths[2].read_bytes() == html
    assert cdn.authorizations == [None] * len(outputs)


async def test_a_literal_dot_dot_path_cannot_escape_either(
    emulator: Emulator, cdn: HostileCDN, tmp_path: Path
) -> None:
    # aiohttp normalises the dots away before sending; the name is still ours.
    cdn.routes = {"/x.sh": web.Response(body=b"#!/bin/sh\n")}
    async with client_for(emulator) as client:
        [path] = await client.download(completed(f"{cdn.url}/a/b/../../../x.sh"), tmp_path)
    assert path == tmp_path / "task_1-0.bin"


@pytest.mark.parametrize(
    "output",
    [
        "javascript:alert(document.cookie)",
        "file:///etc/passwd",
        "data:text/html,<b>hi</b>",
        "  http://x",
    ],
)
async def test_outputs_that_are_not_http_or_base64_are_refused(
    emulator: Emulator, tmp_path: Path, output: str
) -> None:
    async with client_for(emulator) as client:
        with pytest.raises(WaveSpeedError) as info:
            await client.download(completed(output), tmp_path)
    assert info.value.prediction_id == "task_1"
    assert list(tmp_path.iterdir()) == []


async def test_a_prediction_id_with_a_slash_is_refused_before_any_request(
    emulator: Emulator, cdn: HostileCDN, tmp_path: Path
) -> None:
    cdn.routes = {"/a.png": web.Response(body=PNG)}
    async with client_for(emulator) as client:
        with pytest.raises(InvalidInput) as info:
            await client.download(
                completed(f"{cdn.url}/a.png", prediction_id="x/../../y"), tmp_path
            )
    assert info.value.field == "prediction_id"
    assert cdn.authorizations == []
    assert list(tmp_path.iterdir()) == []


async def test_oversized_outputs_are_cut_off_and_leave_no_temporary_file(
    emulator: Emulator, cdn: HostileCDN, tmp_path: Path
) -> None:
    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # chunked: no Content-Length to refuse it up front
        await response.prepare(request)
        for _ in range(64):
            await response.write(PNG + bytes(1024))
        await response.write_eof()
        return response

    cdn.routes = {"/big.png": endless, "/sized.png": web.Response(body=bytes(5000))}
    async with client_for(emulator) as client:
        with pytest.raises(WaveSpeedError, match="exceeds 4096 bytes"):
            await client.download(completed(f"{cdn.url}/big.png"), tmp_path, max_bytes=4096)
        with pytest.raises(WaveSpeedError, match="exceeds 4096 bytes"):
            await client.download(completed(f"{cdn.url}/sized.png"), tmp_path, max_bytes=4096)
        big = base64.b64encode(bytes(5000)).decode()
        with pytest.raises(WaveSpeedError, match="exceeds 4096 bytes"):
            await client.download(completed(big), tmp_path, max_bytes=4096)
    assert list(tmp_path.iterdir()) == []


async def test_a_failed_fetch_leaves_nothing(
    emulator: Emulator, cdn: HostileCDN, tmp_path: Path
) -> None:
    async with client_for(emulator) as client:
        with pytest.raises(WaveSpeedError, match="HTTP 404"):
            await client.download(completed(f"{cdn.url}/gone.png"), tmp_path)
    assert list(tmp_path.iterdir()) == []


async def test_a_link_planted_at_the_file_name_is_replaced_not_followed(
    emulator: Emulator, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "task_1-0.png").symlink_to(victim)
    async with client_for(emulator) as client:
        [path] = await client.download(completed(base64.b64encode(PNG).decode()), out)
    assert victim.read_text() == "precious"
    assert not path.is_symlink()
    assert path.read_bytes() == PNG


async def test_data_uri_outputs_are_decoded(emulator: Emulator, tmp_path: Path) -> None:
    output = "data:image/webp;base64," + base64.b64encode(WEBP).decode()
    async with client_for(emulator) as client:
        [path] = await client.download(completed(output), tmp_path)
    assert (path.name, path.read_bytes()) == ("task_1-0.webp", WEBP)


@pytest.mark.parametrize(
    ("head", "content_type", "url_path", "suffix"),
    [
        (PNG[:16], "application/octet-stream", "/x", ".png"),
        (b"", "image/jpeg", "/x.png", ".jpg"),
        (b"", "text/html", "/x.png", ".bin"),
        (b"", "application/octet-stream", "/x.webp", ".webp"),
        (b"", "", "/x.JPEG", ".jpeg"),
        (b"", "", "/x.exe", ".bin"),
        (b"", "", "/..%2F..%2Fx.sh", ".bin"),
        (b"", "", "/x.png%00.sh", ".bin"),
        (b"", "application/x-sh", "/x.mp4", ".bin"),
        (MP4[:16], "text/plain", "/x.sh", ".mp4"),
    ],
)
def test_output_suffix_comes_from_an_allowlist(
    head: bytes, content_type: str, url_path: str, suffix: str
) -> None:
    assert output_suffix(head, content_type, url_path) == suffix


# --- PredictionFuture.download ------------------------------------------------------------------


async def test_a_future_downloads_its_outputs_once_finished(tmp_path: Path) -> None:
    async with Emulator(speed=0) as emu, client_for(emu) as client:
        future = await client.submit_edit_image("make it snow", image=IMAGE_URL, size=(512, 512))
        with pytest.raises(WaveSpeedError, match="await it") as info:
            await future.download(tmp_path)
        assert info.value.prediction_id == future.id
        emu.advance(60)
        await future
        [path] = await future.download(tmp_path)
    assert path == tmp_path / f"{future.id}-0.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_downloading_a_failed_or_unfinished_prediction_raises(tmp_path: Path) -> None:
    async with Emulator(speed=0) as emu, client_for(emu) as client:
        emu.fail_next(1, "boom")
        future = await client.submit_edit_image("make it snow", image=IMAGE_URL)
        with pytest.raises(WaveSpeedError, match="not completed"):
            await client.download(future.prediction or completed(), tmp_path)
        emu.advance(60)
        with pytest.raises(PredictionFailed):
            await future
        with pytest.raises(PredictionFailed, match="boom"):
            await future.download(tmp_path)
    assert not os.listdir(tmp_path)
