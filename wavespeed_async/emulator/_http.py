"""HTTP helpers shared by the emulator's handlers: the envelope, errors, bodies, origins."""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Iterable
from typing import Any

import aiohttp
from aiohttp import web

from ..errors import InvalidInput

__all__ = [
    "Refused",
    "envelope",
    "error_response",
    "expired_object_response",
    "origin",
    "peer",
    "read_at_most",
    "read_json",
]

_CHUNK = 64 * 1024
#: How deep a request body may nest: every input the platform documents is under 5 levels;
#: the cap keeps decoding, checking and echoing a body (``input``) far from the recursion limit.
MAX_JSON_DEPTH = 64
_INT64 = 2**63
_INT64_DIGITS = 20  # a longer literal is out of range whatever its digits


class Refused(Exception):
    """A request answered with an error status (an envelope under /api/, text elsewhere)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def envelope(data: Any) -> web.Response:
    return web.json_response({"code": 200, "message": "success", "data": data})


def error_response(is_api: bool, status: int, message: str) -> web.Response:
    if is_api:
        body = {"code": status, "message": message, "data": None}
        return web.json_response(body, status=status)
    return web.Response(status=status, text=message)


def expired_object_response() -> web.Response:
    """What storage answers for an object its lifecycle rule deleted: S3's 403 XML.

    ``AccessDenied``, as a CDN in front of a private bucket answers: it cannot tell a
    deleted key from a forbidden one.
    """
    request_id = uuid.uuid4().hex[:16].upper()
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<Error><Code>AccessDenied</Code><Message>Access Denied</Message>"
        f"<RequestId>{request_id}</RequestId><HostId>{request_id}</HostId></Error>"
    )
    return web.Response(status=403, text=body, content_type="application/xml")


def peer(request: web.Request) -> str:
    peername = request.transport.get_extra_info("peername") if request.transport else None
    if isinstance(peername, tuple) and len(peername) >= 2:
        return f"{peername[0]}:{peername[1]}"
    return str(peername or "")


def origin(request: web.Request) -> str:
    # URLs point back at whatever address the client used to reach this server.
    return str(request.url.origin())


async def read_json(request: web.Request) -> object:
    """The request's body as JSON: the one decoder of request bodies, for every route.

    Raises :class:`InvalidInput` (answered 400) for a body that is not JSON (or not UTF-8),
    nests deeper than :data:`MAX_JSON_DEPTH`, or holds a number the API could not read: an
    integer outside 64 bits, a float that overflows, ``NaN`` or ``Infinity``.
    """
    return decode_json(await request.read())


def decode_json(raw: bytes) -> object:
    """Decode and check a request body (see :func:`read_json`)."""
    try:
        value = json.loads(
            raw or b"null",
            parse_int=_read_int,
            parse_float=_read_float,
            parse_constant=_OutOfRange,
        )
    except RecursionError:
        raise _too_deep("body") from None
    except ValueError:  # also UnicodeDecodeError
        raise InvalidInput("body", "<not JSON>", "a JSON object") from None
    _check_tree(value)
    return value


class _OutOfRange:
    """A JSON number the API cannot read, kept as text until its field's name is known."""

    def __init__(self, literal: str) -> None:
        self.literal = literal

    def refusal(self, field: str) -> InvalidInput:
        shown = self.literal if len(self.literal) <= 24 else f"<a {len(self.literal)}-digit number>"
        return InvalidInput(field, shown, "a finite number; integers within 64 bits")


def _read_int(literal: str) -> int | _OutOfRange:
    if len(literal) > _INT64_DIGITS:  # before int(): 4,300+ digits would raise there
        return _OutOfRange(literal)
    value = int(literal)
    return value if -_INT64 <= value < _INT64 else _OutOfRange(literal)


def _read_float(literal: str) -> float | _OutOfRange:
    value = float(literal)
    return value if math.isfinite(value) else _OutOfRange(literal)


def _check_tree(value: object) -> None:
    """Refuse a decoded body nested too deep or holding an unreadable number (iteratively)."""
    stack: list[tuple[object, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, _OutOfRange):
            raise item.refusal(path or "body")
        if depth > MAX_JSON_DEPTH:
            raise _too_deep(re.split(r"[.\[]", path, maxsplit=1)[0] or "body")
        pairs: Iterable[tuple[object, object]]
        if isinstance(item, dict):
            pairs = item.items()
        elif isinstance(item, list):
            pairs = enumerate(item)
        else:
            continue
        for key, child in pairs:
            if isinstance(child, (dict, list, _OutOfRange)):  # scalars need no look
                child_path = f"{path}[{key}]" if isinstance(key, int) else _join(path, str(key))
                stack.append((child, child_path, depth + 1))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _too_deep(field: str) -> InvalidInput:
    return InvalidInput(field, "<nested too deep>", f"JSON nested at most {MAX_JSON_DEPTH} levels")


async def read_at_most(stream: Any, limit: int) -> bytes:
    """Read a body, refusing (413) past ``limit`` bytes without buffering the excess."""
    chunks: list[bytes] = []
    received = 0
    while chunk := await _next_chunk(stream):
        received += len(chunk)
        if received > limit:
            raise Refused(413, f"more than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _next_chunk(stream: Any) -> bytes:
    if isinstance(stream, aiohttp.BodyPartReader):
        return await stream.read_chunk(_CHUNK)
    data: bytes = await stream.read(_CHUNK)
    return data
