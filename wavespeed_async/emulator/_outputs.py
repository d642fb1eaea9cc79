"""What a task returns (its output files) and whether its input media can be fetched.

Outputs: a video model returns the bundled H.264 MP4 of the requested aspect ratio (from
``aspect_ratio``, else the ratio nearest a ``size``, else 16:9); an image model returns
``num_images`` PNGs of the requested ``size`` (default 1024x1024), coloured by the seed so
that a chosen seed gives the same picture.

Input media (code 1402, the platform's media-access error, when one cannot be fetched):
URLs of this emulator (its outputs, uploads) must exist; ``data:`` URIs must decode; hosts
under the reserved TLDs ``.invalid``, ``.test``, ``.example`` and ``.localhost`` (RFC 2606,
RFC 6761) never resolve; any other URL is accepted without being fetched, since the
emulator has no network to reach it with.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

from ._catalog import ASPECT_RATIOS, ModelSpec
from ._history import is_int
from ._media import MP4_CONTENT_TYPE, PNG_CONTENT_TYPE, Colour, colour_for, mp4_for, png
from ._schema import parse_size

__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "MEDIA_ACCESS_CODE",
    "OutputSpec",
    "media_access_error",
    "output_for",
]

DEFAULT_IMAGE_SIZE = (1024, 1024)
#: ``data.code`` of a task that failed because an input file could not be fetched.
MEDIA_ACCESS_CODE = 1402
_GENERATED_SIDE = (64, 4096)  # bounds for an unlisted model's "size", so no one asks for 1e9 px
_RESERVED_TLDS = ("invalid", "test", "example", "localhost")


@attrs.frozen
class OutputSpec:
    """What a completed task returns: ``count`` MP4s of a ratio, or PNGs of a size and colour."""

    kind: str  # "video" or "image"
    width: int = 0
    height: int = 0
    colour: Colour = (0, 0, 0)
    ratio: str = "16:9"
    count: int = 1

    @property
    def extension(self) -> str:
        """The output files' extension, without the dot."""
        return "mp4" if self.kind == "video" else "png"

    def filenames(self) -> list[str]:
        """The output files' names: ``0.png``, ``1.png``, ..."""
        return [f"{index}.{self.extension}" for index in range(self.count)]

    def file(self, index: int) -> tuple[bytes, str]:
        """Output ``index``'s bytes and content type."""
        if self.kind == "video":
            return mp4_for(self.ratio), MP4_CONTENT_TYPE
        colour = self.colour if index == 0 else colour_for((self.colour, index))
        return png(self.width, self.height, colour), PNG_CONTENT_TYPE


def output_for(spec: ModelSpec, body: Mapping[str, Any], task_id: str) -> OutputSpec:
    """The outputs a task of ``spec`` with input ``body`` will return."""
    size = parse_size(body.get("size", spec.properties.get("size", {}).get("default")))
    count = spec.output_count(body)
    if spec.output == "video":
        ratio = body.get("aspect_ratio")
        if ratio not in ASPECT_RATIOS:
            ratio = _nearest_ratio(size) if size else "16:9"
        return OutputSpec("video", ratio=str(ratio), count=count)
    low, high = _GENERATED_SIDE
    if size is None or not all(low <= side <= high for side in size):
        size = DEFAULT_IMAGE_SIZE
    seed = body.get("seed")
    # A chosen seed gives a reproducible picture, as it would on the platform.
    key: object = seed if is_int(seed) and seed >= 0 else task_id
    return OutputSpec("image", size[0], size[1], colour_for(key), count=count)


def _nearest_ratio(size: tuple[int, int]) -> str:
    def distance(ratio: str) -> float:
        width, height = (int(part) for part in ratio.split(":"))
        return abs(width / height - size[0] / max(size[1], 1))

    return min(ASPECT_RATIOS, key=distance)


def media_access_error(body: Mapping[str, Any], own: Callable[[str], bool | None]) -> str | None:
    """Why an input file of ``body`` cannot be fetched, or ``None`` if all can.

    ``own(url)`` says whether a URL of this emulator exists (``None``: not this emulator's).
    """
    for name, value in _media_inputs(body):
        if value.startswith("data:"):
            if not _decodes(value):
                return f"Failed to read {name}: the data URI is not valid base64"
            continue
        parts = urlsplit(value)
        if parts.scheme.lower() not in ("http", "https"):
            continue  # bare base64 or something else: not a download
        exists = own(value)
        host = (parts.hostname or "").rstrip(".").lower()
        if exists is False or (exists is None and _reserved(host)):
            return f"Failed to download {name} from {value}: the file could not be fetched"
    return None


def _media_inputs(body: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """``(field, value)`` of every input that names an image, video or audio file."""
    for name, value in body.items():
        if not any(word in name for word in ("image", "video", "audio")):
            continue
        values = value if isinstance(value, list) else [value]
        yield from ((name, item) for item in values if isinstance(item, str) and item)


def _decodes(uri: str) -> bool:
    header, comma, payload = uri.partition(",")
    if not comma:
        return False
    if not header.endswith(";base64"):
        return True  # percent-encoded data: nothing to decode
    try:
        return bool(base64.b64decode(payload, validate=True))
    except (binascii.Error, ValueError):
        return False


def _reserved(host: str) -> bool:
    labels = host.split(".")
    return (len(labels) > 1 and labels[-1] in _RESERVED_TLDS) or host in _RESERVED_TLDS[:3]
