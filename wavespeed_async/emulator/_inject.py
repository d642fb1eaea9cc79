"""Fault injection: how the app answers a request the :class:`FaultPlan` picked a fault for."""

from __future__ import annotations

import json
import math

import anyio
from aiohttp import web
from aiohttp.typedefs import Handler

from ._faults import Fault
from ._http import error_response
from ._state import EmulatorState
from ._waits import SyncWaits

__all__ = ["SYNC_TIMEOUT_NOW", "inject"]

#: Set on a submit whose sync-mode wait must time out at once (``Fault.SYNC_TIMEOUT``).
SYNC_TIMEOUT_NOW = web.RequestKey("sync_timeout_now", bool)
_HTML_502 = (
    "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
)


async def inject(
    fault: Fault, request: web.Request, handler: Handler, state: EmulatorState, waits: SyncWaits
) -> web.StreamResponse:
    """Answer ``request`` as ``fault`` says (see :class:`Fault` for before/after)."""
    if fault.before:
        return await _answer_before(fault, request)
    if fault is Fault.TASK_FAILS:
        state.fail_next(1, "emulated failure (fault injection)")
    if fault is Fault.SYNC_TIMEOUT:
        request[SYNC_TIMEOUT_NOW] = True
    response = await handler(request)
    if fault is Fault.RESET_AFTER:
        _reset(request)
    elif fault is Fault.STALL:
        with anyio.move_on_after(state.faults.stall_seconds):
            await waits.wait_until(lambda: False, lambda: math.inf)
    elif fault in (Fault.SERVER_ERROR, Fault.GATEWAY_TIMEOUT):
        return error_response(True, int(fault.value), "emulated server error")
    elif fault is Fault.BAD_GATEWAY:
        return web.Response(status=502, text="Bad Gateway")
    elif fault is Fault.MALFORMED_JSON:
        body = _body(response) or b"{}"
        return web.Response(body=body[: len(body) // 2], content_type="application/json")
    elif fault in (Fault.UNKNOWN_STATUS, Fault.MISSING_FIELDS) and isinstance(
        response, web.Response
    ):
        return _rewrite_data(fault, response)
    return response


async def _answer_before(fault: Fault, request: web.Request) -> web.StreamResponse:
    if fault is Fault.RESET_BEFORE:
        _reset(request)
        return web.Response(status=500)  # never reaches the client
    if fault is Fault.HTML_ERROR:
        return web.Response(status=502, text=_HTML_502, content_type="text/html")
    status = 429 if fault in (Fault.RATE_LIMITED, Fault.RATE_LIMITED_RETRY_AFTER) else 503
    message = "emulated: too many requests" if status == 429 else "busy"
    response = error_response(True, status, message)
    if fault in (Fault.RATE_LIMITED_RETRY_AFTER, Fault.UNAVAILABLE_RETRY_AFTER):
        response.headers["Retry-After"] = "1"
    return response


def _reset(request: web.Request) -> None:
    # Abort the socket: the client sees the connection drop, not an HTTP answer.
    if request.transport is not None:
        request.transport.abort()


def _rewrite_data(fault: Fault, response: web.Response) -> web.Response:
    envelope = json.loads(_body(response) or b"{}")
    data = envelope.get("data")
    if isinstance(data, dict):
        if fault is Fault.UNKNOWN_STATUS:
            data["status"] = "queued_for_gpu"
        else:
            envelope["data"] = {"id": data.get("id"), "status": data.get("status")}
    return web.json_response(envelope, status=response.status)


def _body(response: web.StreamResponse) -> bytes:
    body = response.body if isinstance(response, web.Response) else None
    return bytes(body) if isinstance(body, (bytes, bytearray)) else b""
