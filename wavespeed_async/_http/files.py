"""Local files: what to upload (or inline) as an input, and writing outputs to a folder safely.

Inputs are checked here before anything is sent: an image is an http(s) URL, a ``data:``
URI or base64 text of a supported image, or a local file or bytes (read and sniffed here, then
uploaded or inlined by the client). Outputs are written atomically under names this module
chooses (never the server's), with a suffix from a small allowlist.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import mimetypes
import os
import re
import secrets
import stat
from collections.abc import AsyncIterable, AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote, urlsplit

import anyio
import anyio.to_thread
import attrs

from .._wire.models import Prediction, Status
from .._wire.protocol import check_prediction_id
from ..errors import InvalidInput, NotFinished, OutputExpired, PredictionFailed, WaveSpeedError

if TYPE_CHECKING:
    from .answers import Output

__all__ = [
    "check_finished",
    "MAX_DOWNLOAD",
    "MAX_UPLOAD",
    "OUTPUT_RETENTION",
    "Media",
    "check_output",
    "decode_output",
    "download_outputs",
    "fetchable",
    "image_input",
    "is_inline",
    "output_suffix",
    "read_media",
    "sniff_type",
]

MAX_UPLOAD = 200 * 1024 * 1024
MAX_DOWNLOAD = 2 * 1024 * 1024 * 1024
#: How long the platform keeps a task's outputs (and uploads).
OUTPUT_RETENTION = dt.timedelta(days=7)
_GONE = frozenset({403, 404, 410})  # what storage answers for an object it no longer serves
_CHUNK = 256 * 1024
_HEAD = 16  # bytes enough to recognise every type below

#: The image types the edit models take, with the suffix an upload of each is named with.
IMAGE_TYPES = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
}
_IMAGE_SUFFIXES = {**{suffix: kind for kind, suffix in IMAGE_TYPES.items()}, ".jpeg": "image/jpeg"}
_SUPPORTED_IMAGES = "a PNG, JPEG, WebP or GIF image"
_IMAGE_ALLOWED = (
    "an http(s) URL, a data:image/...;base64, URI, base64 text of an image, or an existing"
    f" local file or bytes of {_SUPPORTED_IMAGES}"
)
#: The only suffixes a saved output gets; anything else is saved as ``.bin``.
OUTPUT_SUFFIXES = frozenset({".mp4", ".png", ".jpg", ".jpeg", ".webp", ".gif", ".mov", ".webm"})
_SUFFIX_FOR_TYPE = {
    **IMAGE_TYPES,
    "video/mp4": ".mp4",
    "video/quicktime": ".mov",
    "video/webm": ".webm",
}
_UNTYPED = frozenset({"", "application/octet-stream", "binary/octet-stream"})
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_DATA_IMAGE = re.compile(r"data:(image/[\w.+-]+);base64,(.*)", re.IGNORECASE | re.DOTALL)
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]{0,31}):")
# A saved output gets the mode any new file would have: created 0666, the kernel applies the
# process's umask as it is at that moment (no global state read or changed here).
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)


# --- inputs ---------------------------------------------------------------------------------


@attrs.frozen
class Media:
    """A local file to send: its bytes, the name to announce and its content type."""

    data: bytes = attrs.field(repr=lambda data: f"<{len(data)} bytes>")
    filename: str
    content_type: str

    def data_uri(self) -> str:
        """The file inline, as ``data:<type>;base64,...``."""
        return f"data:{self.content_type};base64,{base64.b64encode(self.data).decode('ascii')}"


def sniff_type(head: bytes) -> str | None:
    """The media type the first bytes of a file announce, among those this client knows."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp":
        return "video/quicktime" if head[8:12] == b"qt  " else "video/mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm"
    return None


async def read_media(
    source: str | os.PathLike[str] | bytes,
    *,
    field: str = "file",
    filename: str | None = None,
    images_only: bool = False,
) -> Media:
    """Read a local file (in a worker thread) or take bytes; check size and type.

    At most 200 MB and not empty. The content type comes from the bytes, else from the name's
    suffix; with ``images_only`` it must be PNG, JPEG, WebP or GIF. Every problem is an
    :class:`InvalidInput` naming ``field``.
    """
    if isinstance(source, bytes):
        return _media(source, filename, field=field, images_only=images_only)
    return await anyio.to_thread.run_sync(_read_file, Path(source), filename, field, images_only)


def _read_file(path: Path, filename: str | None, field: str, images_only: bool) -> Media:
    try:
        info = path.stat()
    except (OSError, ValueError):
        info = None
    if info is None or not stat.S_ISREG(info.st_mode):
        raise InvalidInput(field, str(path), "an existing file")
    if info.st_size > MAX_UPLOAD:
        raise InvalidInput(field, str(path), f"at most 200 MB (it has {info.st_size} bytes)")
    try:
        with path.open("rb") as file:
            data = file.read(MAX_UPLOAD + 1)  # the file may have grown since stat()
    except OSError as exc:
        raise InvalidInput(field, str(path), f"a readable file ({exc.strerror})") from None
    return _media(data, filename or path.name, field=field, images_only=images_only)


def _media(data: bytes, filename: str | None, *, field: str, images_only: bool) -> Media:
    shown = filename or f"<{len(data)} bytes>"
    if not data:
        raise InvalidInput(field, shown, "a non-empty file")
    if len(data) > MAX_UPLOAD:
        raise InvalidInput(field, shown, f"at most 200 MB (got {len(data)} bytes)")
    sniffed = sniff_type(data[:_HEAD])
    suffix = PurePosixPath(filename or "").suffix.lower()
    if images_only:
        # The bytes decide; the name only vouches for what they do not recognise.
        content_type = sniffed if sniffed is not None else _IMAGE_SUFFIXES.get(suffix)
        if content_type not in IMAGE_TYPES:
            raise InvalidInput(field, shown, _SUPPORTED_IMAGES)
    else:
        content_type = (
            sniffed or mimetypes.guess_type(f"x{suffix}")[0] or "application/octet-stream"
        )
    name = filename or f"upload{_SUFFIX_FOR_TYPE.get(content_type, '.bin')}"
    return Media(data, name, content_type)


async def image_input(image: object) -> str | Media:
    """What an edit's ``image`` argument is: a string to send as it is, or a local image.

    - an ``http(s)://`` URL or a ``data:image/...;base64,`` URI of a supported image: itself;
    - bare base64 text of a supported image: made a data URI (the API's form for base64);
    - a path (``str`` or ``os.PathLike``) of an existing file, or ``bytes``: a :class:`Media`
      for the client to upload or inline.

    Anything else raises :class:`InvalidInput` for ``image``, before any request.
    """
    if isinstance(image, (bytes, os.PathLike)):
        return await read_media(image, field="image", images_only=True)
    if not isinstance(image, str) or not image.strip():
        raise InvalidInput("image", image, _IMAGE_ALLOWED)
    text = image.strip()
    parts = urlsplit(text) if _SCHEME.match(text) else None
    if parts is not None and parts.scheme.lower() in ("http", "https") and parts.netloc:
        return text
    if text[:5].lower() == "data:":
        match = _DATA_IMAGE.fullmatch(text)
        if match is None or _base64_image_type(match[2]) is None:
            raise InvalidInput(
                "image", image, f"a data:image/...;base64, URI of {_SUPPORTED_IMAGES}"
            )
        return text
    if _is_file(text):
        return await read_media(text, field="image", images_only=True)
    compact = "".join(text.split())  # base64 is often wrapped at 76 columns
    kind = _base64_image_type(compact)
    if kind is None:
        raise InvalidInput("image", image, _IMAGE_ALLOWED)
    return f"data:{kind};base64,{compact}"


def _is_file(text: str) -> bool:
    if len(text) > 4096 or "\n" in text:  # base64 text, not a path: spare the file system
        return False
    try:
        return Path(text).is_file()
    except (OSError, ValueError):
        return False


def _base64_image_type(text: str) -> str | None:
    """The supported image type that base64 ``text`` encodes, checking only its first bytes."""
    if len(text) % 4 or not _BASE64.fullmatch(text):
        return None
    if len(text) // 4 * 3 > MAX_UPLOAD:
        raise InvalidInput("image", text, "at most 200 MB")
    kind = sniff_type(base64.b64decode(text[:24]))
    return kind if kind in IMAGE_TYPES else None


# --- outputs --------------------------------------------------------------------------------


def output_suffix(head: bytes, content_type: str, url_path: str) -> str:
    """The suffix to save an output with, from an allowlist; ``.bin`` when unsure.

    The bytes decide first. Then a media type the server declares. The URL's suffix counts
    only when the server declares no type: a ``text/html`` answer at ``x.png`` is not a PNG.
    """
    sniffed = sniff_type(head)
    if sniffed is not None:
        return _SUFFIX_FOR_TYPE[sniffed]
    declared = content_type.split(";", 1)[0].strip().lower()
    if declared not in _UNTYPED:
        return _SUFFIX_FOR_TYPE.get(declared, ".bin")
    suffix = PurePosixPath(unquote(url_path)).suffix.lower()
    return suffix if suffix in OUTPUT_SUFFIXES else ".bin"


class OpenOutput(Protocol):
    """Opens an output URL for streaming (the client's HTTP owner does the I/O)."""

    def __call__(
        self, url: str, shown: str, *, timeout: float
    ) -> AbstractAsyncContextManager[Output]: ...


def check_finished(prediction: Prediction) -> None:
    """Raise unless ``prediction`` completed: :class:`PredictionFailed` or :class:`NotFinished`."""
    if prediction.status.is_failure:
        raise PredictionFailed(prediction)
    if prediction.status is not Status.COMPLETED:
        raise NotFinished(
            f"prediction {prediction.id} is {prediction.raw_status or prediction.status.value},"
            " not completed: nothing to download yet",
            prediction_id=prediction.id,
        )


async def download_outputs(
    open_output: OpenOutput,
    prediction: Prediction,
    directory: Path,
    *,
    max_bytes: int,
    timeout: float,
) -> list[Path]:
    """Write each output to ``directory/{id}-{index}{suffix}`` atomically; returns the paths.

    URLs are fetched over http(s) only; ``data:`` URIs and bare base64 are decoded. A failure
    leaves no partial file (outputs saved before it stay); an output past the platform's
    retention raises :class:`OutputExpired`.
    """
    check_prediction_id(prediction.id)  # the id becomes a file name: no separators in it
    await anyio.Path(directory).mkdir(parents=True, exist_ok=True)
    paths = []
    for index, output in enumerate(prediction.outputs):
        stem = f"{prediction.id}-{index}"
        try:
            if is_inline(output):
                data, declared = decode_output(output, stem, max_bytes)
                paths.append(await _write_decoded(data, declared, directory, stem, max_bytes))
            else:
                url, shown = fetchable(output, index)
                async with open_output(url, shown, timeout=timeout) as opened:
                    check_output(opened, prediction, index, shown, max_bytes)
                    paths.append(await _save(opened, url, directory, stem, max_bytes, shown))
        except WaveSpeedError as exc:
            exc.prediction_id = exc.prediction_id or prediction.id
            raise
    return paths


def is_inline(output: str) -> bool:
    """Whether an output is its own content (a ``data:`` URI or bare base64), not a URL."""
    return output[:5].lower() == "data:" or ":" not in output  # base64 has no colon


def fetchable(output: str, index: int) -> tuple[str, str]:
    """The URL of output ``index`` and what to call it in errors; refused unless http(s).

    Errors show the URL's path only: a signed URL's query is a credential.
    """
    scheme = _SCHEME.match(output)
    if scheme is None or scheme[1].lower() not in ("http", "https"):
        shown = f"over {scheme[1]}:" if scheme else "that is not a URL"
        raise WaveSpeedError(f"refusing to fetch output {index} {shown} (http(s) only)")
    path = urlsplit(output).path
    return output, path if len(path) <= 100 else f"{path[:60]}...{path[-20:]}"


def check_output(
    output: Output, prediction: Prediction, index: int, shown: str, max_bytes: int
) -> None:
    """Raise unless ``output`` is a 200 within ``max_bytes``: :class:`OutputExpired` when gone.

    An output URL that answers 403, 404 or 410 for a task older than the platform's
    retention (:data:`OUTPUT_RETENTION`) has expired; the age runs from the task's
    ``created_at`` to the answer's ``Date`` (else this machine's clock).
    """
    if output.status != 200:
        created = prediction.created_at
        if output.status in _GONE and created is not None:
            now = output.served_at or dt.datetime.now(dt.timezone.utc)
            if now - created >= OUTPUT_RETENTION:
                raise OutputExpired(prediction.id, now - created, index)
        raise WaveSpeedError(f"download of {shown} failed: HTTP {output.status}")
    if output.content_length is not None and output.content_length > max_bytes:
        raise WaveSpeedError(f"download of {shown} exceeds {max_bytes} bytes")


async def _save(
    output: Output, url: str, directory: Path, stem: str, max_bytes: int, shown: str
) -> Path:
    path = urlsplit(url).path
    return await _write_atomically(
        output.chunks,
        directory,
        stem,
        lambda head: output_suffix(head, output.content_type, path),
        max_bytes=max_bytes,
        what=f"download of {shown}",
    )


def decode_output(output: str, stem: str, max_bytes: int) -> tuple[bytes, str]:
    """The bytes of a ``data:`` URI or bare base64 output, and the type it declares."""
    declared, text = "", output
    if output[:5].lower() == "data:":
        header, comma, text = output.partition(",")
        if not comma or not header.lower().endswith(";base64"):
            raise WaveSpeedError(f"output {stem} is a data: URI without base64 content")
        declared = header[5 : -len(";base64")]
    if len(text) // 4 * 3 > max_bytes:  # refuse before decoding it all
        raise WaveSpeedError(f"output {stem} exceeds {max_bytes} bytes")
    try:
        return base64.b64decode(text, validate=True), declared
    except (binascii.Error, ValueError):
        raise WaveSpeedError(f"output {stem} is neither an http(s) URL nor base64") from None


async def _write_decoded(
    data: bytes, declared: str, directory: Path, stem: str, max_bytes: int
) -> Path:
    return await _write_atomically(
        _once(data),
        directory,
        stem,
        lambda head: output_suffix(head, declared, ""),
        max_bytes=max_bytes,
        what=f"output {stem}",
    )


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _write_atomically(
    chunks: AsyncIterable[bytes],
    directory: Path,
    stem: str,
    suffix_for: Callable[[bytes], str],
    *,
    max_bytes: int,
    what: str,
) -> Path:
    """Stream ``chunks`` to a temporary file, then rename it ``stem + suffix_for(head)``.

    ``head`` is the first bytes written. On failure nothing is left behind.
    """
    temp = directory / f".{stem}.{secrets.token_hex(8)}.part"
    os.close(os.open(temp, _NEW_FILE, 0o666))
    try:
        head, written = b"", 0
        async with await anyio.open_file(temp, "wb") as file:
            async for chunk in chunks:
                written += len(chunk)
                if written > max_bytes:
                    raise WaveSpeedError(f"{what} exceeds {max_bytes} bytes")
                if len(head) < _HEAD:
                    head += chunk[: _HEAD - len(head)]
                await file.write(chunk)
        path = directory / f"{stem}{suffix_for(head)}"
        os.replace(temp, path)  # replaces a link at ``path`` itself, never what it points to
        return path
    finally:
        temp.unlink(missing_ok=True)
