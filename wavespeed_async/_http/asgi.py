"""The ASGI protocol, spoken by hand so that the receiver needs no web framework.

Only the parts a webhook endpoint uses: read a request body (bounded), answer with a short
text, and the lifespan handshake for when the receiver is served alone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

__all__ = [
    "BodyTooLarge",
    "Receive",
    "Scope",
    "Send",
    "answer",
    "read_body",
    "request_headers",
    "serve_lifespan",
]

# The three callables of the ASGI spec, as its own typing suggests (and as Starlette spells
# them), without importing anyone's types.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodyTooLarge(Exception):
    """The request body is over the limit (declared or actually sent)."""


def request_headers(scope: Scope) -> dict[str, str]:
    """The request's headers, names lower-cased (ASGI sends them as latin-1 bytes)."""
    return {
        name.decode("latin-1").lower(): value.decode("latin-1")
        for name, value in scope.get("headers", ())
    }


async def read_body(receive: Receive, headers: Mapping[str, str], limit: int) -> bytes | None:
    """The whole body, or ``None`` if the client hung up; :class:`BodyTooLarge` past ``limit``."""
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def answer(
    send: Send, status: int, text: str, extra_headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """A complete plain-text response."""
    body = text.encode("utf-8")
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode("ascii")),
        *(extra_headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def serve_lifespan(
    receive: Receive, send: Send, on_shutdown: Callable[[], Awaitable[None]]
) -> None:
    """Answer the lifespan scope: nothing to start, ``on_shutdown()`` before stopping."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await on_shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return
