"""Upload storage for the emulator: tickets, pre-signed PUT slots and stored files (no I/O)."""

from __future__ import annotations

import collections
import hashlib
import hmac
import mimetypes
import secrets
import uuid

import attrs

from ..errors import InvalidInput

__all__ = ["MAX_UPLOAD", "UploadSlot", "UploadStore", "UploadTooLarge"]

MAX_UPLOAD = 200 * 1024 * 1024
_MAX_FILENAME = 1024  # characters: S3's limit on a whole key


@attrs.define(eq=False)
class UploadSlot:
    """A file announced by an upload ticket; ``data`` is ``None`` until its PUT arrives.

    ``created`` is the emulated time of the ticket; once past the retention the file is
    ``expired`` and its ``data`` dropped.
    """

    token: str
    filename: str
    size: int
    content_type: str
    created: float = 0.0
    data: bytes | None = None
    expired: bool = False


class UploadTooLarge(InvalidInput):
    """A file over the 200 MB limit (answered with 413, not 400)."""


class UploadStore:
    """Files announced by tickets or uploaded in one go, keyed by an unguessable token.

    Each is kept ``retention`` emulated seconds from its ticket; then it expires and its
    bytes are dropped (the slot stays, so its URL answers "expired", not "never existed").
    """

    def __init__(self, retention: float) -> None:
        self.slots: dict[str, UploadSlot] = {}
        self.retention = retention
        self._signing_key = secrets.token_bytes(16)
        self._unexpired: collections.deque[UploadSlot] = collections.deque()  # oldest first

    def sweep(self, now: float) -> None:
        """Expire every file past the retention at emulated time ``now``, dropping its bytes."""
        while self._unexpired and now - self._unexpired[0].created >= self.retention:
            slot = self._unexpired.popleft()
            slot.data, slot.expired = None, True

    def announce(self, body: object, now: float) -> UploadSlot:
        """Validate an upload-ticket request and reserve a slot for the file at ``now``."""
        if not isinstance(body, dict):
            raise InvalidInput("body", type(body).__name__, "a JSON object")
        filename, size = body.get("filename"), body.get("size")
        if not isinstance(filename, str) or not filename.strip() or len(filename) > _MAX_FILENAME:
            raise InvalidInput("filename", filename, f"a name of 1 to {_MAX_FILENAME} characters")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidInput("size", size, "the file's size in bytes")
        if size > MAX_UPLOAD:
            raise UploadTooLarge("size", size, f"at most {MAX_UPLOAD} bytes (200 MB)")
        content_type = body.get("content_type")
        if not isinstance(content_type, str) or not content_type:
            content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        return self._add(filename, size, content_type, now)

    def store(self, filename: str, content_type: str, data: bytes, now: float) -> UploadSlot:
        """Keep a file that arrived in one request (the older multipart route) at ``now``."""
        slot = self._add(filename, len(data), content_type, now)
        slot.data = data
        return slot

    def _add(self, filename: str, size: int, content_type: str, now: float) -> UploadSlot:
        self.sweep(now)
        name = filename.replace("\\", "/").rsplit("/", 1)[-1].strip()[:_MAX_FILENAME] or "upload"
        slot = UploadSlot(uuid.uuid4().hex, name, size, content_type[:_MAX_FILENAME], now)
        self.slots[slot.token] = slot
        self._unexpired.append(slot)
        return slot

    def signature(self, token: str) -> str:
        """The signature that makes an upload URL valid (it stands in for S3's pre-signing)."""
        return hmac.new(self._signing_key, token.encode(), hashlib.sha256).hexdigest()

    def signed_slot(self, token: str, signature: str, now: float) -> UploadSlot | None:
        """The slot a PUT URL names, if its signature is right and it has not expired."""
        self.sweep(now)
        slot = self.slots.get(token)
        if (
            slot is None
            or slot.expired
            or not hmac.compare_digest(signature, self.signature(token))
        ):
            return None
        return slot
