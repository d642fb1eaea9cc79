"""HTTP helpers shared by the emulator's handlers: the envelope, errors, bodies, origins."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from aiohttp import web

from ..errors import InvalidInput

__all__ = [
    "Refused",
    "envelope",
    "error_response",
    "origin",
    "peer",
    "read_at_most",
    "read_json",
]

_CHUNK = 64 * 1024


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


def peer(request: web.Request) -> str:
    peername = request.transport.get_extra_info("peername") if request.transport else None
    if isinstance(peername, tuple) and len(peername) >= 2:
        return f"{peername[0]}:{peername[1]}"
    return str(peername or "")


def origin(request: web.Request) -> str:
    # URLs point back at whatever address the client used to reach this server.
    return str(request.url.origin())


async def read_json(request: web.Request) -> object:
    try:
        return json.loads(await request.read() or b"null")
    except ValueError:
        raise InvalidInput("body", "<not JSON>", "a JSON object") from None


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
