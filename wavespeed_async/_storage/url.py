"""Where outputs go: a local folder or an object store, parsed from what the user wrote (pure).

``"videos/"``, ``Path("videos")`` and ``"file:///srv/videos"`` are local folders (today's
atomic writer); ``"s3://bucket/prefix/"``, ``"gs://bucket/prefix/"`` and
``"az://container/prefix/"`` are object stores. Anything else that looks like a URL is refused
before any request, naming the destination and the schemes allowed.

>>> parse_destination("s3://media/runs/2024")
StoreDestination(scheme='s3', bucket='media', prefix='runs/2024/')
>>> parse_destination("videos/")
LocalDestination(directory=PosixPath('videos'))
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import attrs

from ..errors import InvalidInput

__all__ = [
    "STORE_SCHEMES",
    "Destination",
    "LocalDestination",
    "StoreDestination",
    "is_store_url",
    "parse_destination",
]

#: The object stores a destination may name, by URL scheme.
STORE_SCHEMES = ("s3", "gs", "az")
_ALLOWED = (
    "a local folder, a file:// URL, or an object store URL: s3://bucket/prefix/"
    " (AWS, R2, MinIO or any S3-compatible store), gs://bucket/prefix/ or"
    " az://container/prefix/"
)
# A scheme, then "://" or ":" (``C:\\videos`` is a drive, not a scheme: one letter).
_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):(//)?")
# S3's rules, loosely (GCS and Azure names fit them too): 3-63 of a-z 0-9 . - _
_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]")


@attrs.frozen
class LocalDestination:
    """A local folder: outputs are written there atomically, as files."""

    directory: Path


@attrs.frozen
class StoreDestination:
    """A bucket and a key prefix in an object store (``prefix`` is empty or ends in ``/``)."""

    scheme: str
    bucket: str
    prefix: str

    @property
    def url(self) -> str:
        """The destination as a URL: ``s3://bucket/prefix/``."""
        return f"{self.scheme}://{self.bucket}/{self.prefix}"

    def key(self, name: str) -> str:
        """The key of an object called ``name`` under the prefix."""
        return f"{self.prefix}{name}"

    def url_of(self, key: str) -> str:
        """The URL of the object at ``key``: ``s3://bucket/key``."""
        return f"{self.scheme}://{self.bucket}/{key}"


Destination = LocalDestination | StoreDestination


def is_store_url(text: str) -> bool:
    """Whether ``text`` names an object (or a prefix) in an object store."""
    match = _URL.match(text)
    return match is not None and match[1].lower() in STORE_SCHEMES


def parse_destination(value: object, *, field: str = "directory") -> Destination:
    """The destination ``value`` names; :class:`InvalidInput` for ``field`` if it names none.

    A folder may be a ``str`` or an ``os.PathLike``; only a ``str`` may be a URL.
    """
    if isinstance(value, os.PathLike):
        return LocalDestination(Path(value))
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(field, value, _ALLOWED)
    match = _URL.match(value)
    if match is None:
        return LocalDestination(Path(value))
    scheme = match[1].lower()
    if scheme == "file":
        return _file_url(value, field)
    if scheme not in STORE_SCHEMES or not match[2]:
        raise InvalidInput(field, value, _ALLOWED)
    parts = urlsplit(value)
    if parts.query or parts.fragment or "@" in parts.netloc:
        # Credentials and options come from the environment or StorageOptions, never the URL.
        raise InvalidInput(field, _shown(value), f"{_ALLOWED}, without user, query or fragment")
    bucket = parts.netloc
    if not _BUCKET.fullmatch(bucket):
        raise InvalidInput(field, value, f"{_ALLOWED}; {bucket!r} is not a bucket name")
    return StoreDestination(scheme, bucket, _prefix(unquote(parts.path), value, field))


def _file_url(value: str, field: str) -> LocalDestination:
    parts = urlsplit(value)
    if parts.netloc not in ("", "localhost") or not parts.path:
        raise InvalidInput(field, value, f"{_ALLOWED} (file:///absolute/path)")
    return LocalDestination(Path(unquote(parts.path)))


def _prefix(path: str, value: str, field: str) -> str:
    segments = [segment for segment in path.split("/") if segment]
    if any(segment in (".", "..") for segment in segments):
        raise InvalidInput(field, value, f"{_ALLOWED}, with no . or .. in the prefix")
    return "".join(f"{segment}/" for segment in segments)


def _shown(value: str) -> str:
    # A URL with a user part may carry a password: show only its scheme and host.
    parts = urlsplit(value)
    return f"{parts.scheme}://{parts.hostname or ''}/..."
