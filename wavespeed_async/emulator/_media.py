r"""Output media for the emulator: a small PNG encoder and the bundled MP4s.

``media/`` holds one tiny H.264 MP4 per aspect ratio (1 s, 1080p-class: 1920x1080, 1440x1080,
1080x1080, 1080x1440, 1080x1920, 2520x1080, 1080x2520), made once with::

    ffmpeg -f lavfi -i color=c=0x3060a0:s=1920x1080:d=1:r=2 -c:v libx264 -preset veryslow \
        -crf 51 -pix_fmt yuv420p -movflags +faststart -an 16x9.mp4

Nothing here knows HTTP; the app serves these bytes.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import struct
import zlib

__all__ = ["MP4_CONTENT_TYPE", "PNG_CONTENT_TYPE", "Colour", "colour_for", "mp4_for", "png"]

PNG_CONTENT_TYPE = "image/png"
MP4_CONTENT_TYPE = "video/mp4"

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

Colour = tuple[int, int, int]


def colour_for(key: object) -> Colour:
    """A stable RGB colour for ``key`` (a seed, a task id): same key, same picture."""
    digest = hashlib.sha256(str(key).encode()).digest()
    return (digest[0], digest[1], digest[2])


@functools.lru_cache(maxsize=32)
def png(width: int, height: int, colour: Colour) -> bytes:
    """An RGB PNG of ``width`` x ``height``: a vertical gradient from ``colour`` to black.

    Cached because a 2048x2048 image takes a noticeable fraction of a second to compress and
    tests ask for the same few sizes over and over.

    >>> png(2, 1, (255, 0, 0))[1:4]
    b'PNG'
    """
    if width < 1 or height < 1:
        raise ValueError(f"a PNG needs a positive size, got {width}x{height}")
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    raw = b"".join(b"\x00" + _row(width, colour, row, height) for row in range(height))
    return b"".join(
        (
            _PNG_SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(raw, 6)),
            _chunk(b"IEND", b""),
        )
    )


def _row(width: int, colour: Colour, row: int, height: int) -> bytes:
    # One colour per row keeps each row a repeated triple, which zlib squeezes very fast.
    fade = 1.0 - row / max(height - 1, 1) * 0.75
    pixel = bytes(int(channel * fade) for channel in colour)
    return pixel * width


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


@functools.lru_cache(maxsize=8)
def mp4_for(ratio: str) -> bytes:
    """The bundled MP4 of ``ratio`` (``"16:9"``, ``"9:21"``, ...)."""
    name = f"media/{ratio.replace(':', 'x')}.mp4"
    return importlib.resources.files("wavespeed_async.emulator").joinpath(name).read_bytes()
