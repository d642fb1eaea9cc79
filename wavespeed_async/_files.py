"""Local files: what to upload, and saving a prediction's outputs safely."""

from __future__ import annotations

import base64
import binascii
import contextlib
import mimetypes
import os
import re
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import anyio

from ._models import Prediction
from ._protocol import check_prediction_id
from .errors import InvalidInput, TransportError, WaveSpeedError

__all__ = ["MAX_DOWNLOAD", "MAX_UPLOAD", "download_outputs", "read_upload"]

MAX_UPLOAD = 200 * 1024 * 1024
MAX_DOWNLOAD = 2 * 1024 * 1024 * 1024
_CHUNK = 256 * 1024
_EXTENSION = re.compile(r"^\.[a-z0-9]{1,5}$")
_MAGIC = ((b"\x89PNG", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"GIF8", ".gif"))
# mkstemp creates files 0600; a saved output gets the mode any new file would have.
_UMASK = os.umask(0)
os.umask(_UMASK)


def read_upload(file: str | Path | bytes, filename: str | None) -> tuple[bytes, str, str]:
    """The bytes, file name and content type of something to upload; checks the 200 MB limit."""
    if isinstance(file, bytes):
        data, name = file, filename or "upload" + _sniff(file, ".bin")
    else:
        path = Path(file)
        if not path.is_file():
            raise InvalidInput("file", str(file), "an existing file")
        if path.stat().st_size > MAX_UPLOAD:
            raise InvalidInput("file", str(file), "at most 200 MB")
        data, name = path.read_bytes(), filename or path.name
    if len(data) > MAX_UPLOAD:
        raise InvalidInput("file", f"<{len(data)} bytes>", "at most 200 MB")
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return data, name, content_type


async def download_outputs(
    session: aiohttp.ClientSession, prediction: Prediction, directory: Path, *, max_bytes: int
) -> list[Path]:
    """Write each output to ``directory/{id}-{index}{ext}`` atomically; returns the paths."""
    check_prediction_id(prediction.id)  # the id becomes a file name: no separators in it
    await anyio.Path(directory).mkdir(parents=True, exist_ok=True)
    paths = []
    for index, output in enumerate(prediction.outputs):
        stem = directory / f"{prediction.id}-{index}"
        scheme = urlsplit(output).scheme if "://" in output[:16] else ""
        if scheme in ("http", "https"):
            paths.append(await _fetch(session, output, stem, max_bytes))
        elif scheme:
            raise WaveSpeedError(f"refusing to fetch output {index} over {scheme}://")
        else:
            paths.append(await _decode(output, stem, max_bytes))
    return paths


async def _fetch(session: aiohttp.ClientSession, url: str, stem: Path, max_bytes: int) -> Path:
    # A plain request: outputs live on a CDN, which must never see the API key.
    path = urlsplit(url).path
    try:
        async with session.get(url) as response:
            if response.status != 200:
                raise WaveSpeedError(f"download of {path} failed: HTTP {response.status}")
            suffix = _suffix(path, response.content_type)
            async with _atomic(stem.with_suffix(suffix)) as write:
                written = 0
                async for chunk in response.content.iter_chunked(_CHUNK):
                    written += len(chunk)
                    if written > max_bytes:
                        raise WaveSpeedError(f"download of {path} exceeds {max_bytes} bytes")
                    await write(chunk)
            return stem.with_suffix(suffix)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise TransportError(f"download of {path} failed: {type(exc).__name__}") from None


async def _decode(output: str, stem: Path, max_bytes: int) -> Path:
    text = output.split(",", 1)[1] if output.startswith("data:") else output
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise WaveSpeedError(f"output of {stem.name} is neither a URL nor base64") from None
    if len(data) > max_bytes:
        raise WaveSpeedError(f"output {stem.name} exceeds {max_bytes} bytes")
    path = stem.with_suffix(_sniff(data, ".bin"))
    async with _atomic(path) as write:
        await write(data)
    return path


def _suffix(url_path: str, content_type: str) -> str:
    suffix = os.path.splitext(url_path)[1].lower()
    if _EXTENSION.match(suffix):
        return suffix
    guessed = mimetypes.guess_extension(content_type or "") or ".bin"
    return guessed if _EXTENSION.match(guessed) else ".bin"


def _sniff(data: bytes, default: str) -> str:
    if data[4:8] == b"ftyp":
        return ".mp4"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return next((ext for magic, ext in _MAGIC if data.startswith(magic)), default)


@contextlib.asynccontextmanager
async def _atomic(path: Path) -> AsyncIterator[Callable[[bytes], Awaitable[int]]]:
    """Write to a temporary file beside ``path``, renamed over it only when complete."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    temp = Path(name)
    try:
        async with await anyio.open_file(temp, "wb") as file:
            yield file.write
        os.chmod(temp, 0o666 & ~_UMASK)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)  # noqa: ASYNC240 - one metadata call, no data
