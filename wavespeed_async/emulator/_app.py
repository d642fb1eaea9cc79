"""The emulator's aiohttp application: thin handlers over :class:`EmulatorState`."""

from __future__ import annotations

import base64
import email.utils
import uuid
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler

from .._wire.convert import converter
from .._wire.models import Prediction, Status, Timings
from .._wire.protocol import check_model_id
from ..errors import InvalidInput
from ._account import InsufficientFunds, RateLimited, retry_after_header
from ._account_routes import AccountRoutes
from ._faults import ACCOUNT_PATHS, route_of
from ._http import (
    Refused,
    envelope,
    error_response,
    expired_object_response,
    origin,
    peer,
    read_at_most,
    read_json,
)
from ._inject import SYNC_TIMEOUT_NOW, inject
from ._state import SYNC_TIMEOUT_CODE, SYNC_TIMEOUT_ERROR, EmulatorState, Kept, TaskRecord
from ._uploads import MAX_UPLOAD, UploadSlot, UploadTooLarge
from ._waits import SyncWaits

__all__ = ["INSUFFICIENT_BALANCE_STATUS", "build_app", "render_task"]

# The first path segments of fixed API routes: never model ids, so never a submit.
_RESERVED = ("predictions", "media", "webhook", *ACCOUNT_PATHS)
#: The status of a submit the balance cannot pay for (undocumented upstream; the message,
#: which starts "Insufficient balance", is what clients match on).
INSUFFICIENT_BALANCE_STATUS = 402
_MAX_JSON_BODY = 64 * 1024 * 1024  # edit inputs may carry a base64 image in the body
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def build_app(state: EmulatorState, waits: SyncWaits) -> web.Application:
    """The application serving the API, the upload storage and the outputs."""
    handlers = _Handlers(state, waits)
    app = web.Application(middlewares=[handlers.middleware], client_max_size=_MAX_JSON_BODY)
    # Fixed routes first: aiohttp tries resources registered under one prefix in order, and
    # the model route below would otherwise claim /api/v3/predictions and /api/v3/media/...
    app.router.add_post("/api/v3/predictions", handlers.history)
    app.router.add_post("/api/v3/predictions/delete", handlers.delete)
    app.router.add_get("/api/v3/predictions/{id}/result", handlers.result)
    app.router.add_get("/api/v3/predictions/{id}", handlers.result)
    app.router.add_delete("/api/v3/predictions/{id}", handlers.delete_one)
    AccountRoutes(state).add_to(app.router)
    app.router.add_post("/api/v3/media/uploads", handlers.upload_ticket)
    app.router.add_post("/api/v3/media/upload/binary", handlers.upload_binary)
    app.router.add_get("/api/v3/webhook/secret", handlers.webhook_secret)
    app.router.add_post("/api/v3/{model:.+}", handlers.submit)
    app.router.add_put("/storage/upload/{token}", handlers.upload_put)
    app.router.add_get("/storage/files/{token}/{filename}", handlers.download)
    app.router.add_get("/outputs/{id}/{filename}", handlers.output)
    app.router.add_route("*", "/{path:.*}", handlers.not_found)  # last: whatever is left
    return app


class _Handlers:
    def __init__(self, state: EmulatorState, waits: SyncWaits) -> None:
        self.state = state
        self.waits = waits

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Record the request, check the key on API routes, turn errors into answers."""
        is_api = request.path.startswith("/api/")
        authorization = request.headers.get("Authorization")
        self.state.record_request(
            request.method, request.path, request.query, authorization is not None, peer(request)
        )
        response: web.StreamResponse
        try:
            if is_api and not self.state.authorized(authorization):
                # Never say what key arrived: only that none was acceptable.
                raise Refused(401, "Unauthorized: missing or invalid API key")
            fault = self.state.faults.pick(route_of(request.method, request.path))
            if fault is None:
                response = await handler(request)
            else:
                response = await inject(fault, request, handler, self.state, self.waits)
        except UploadTooLarge as exc:
            response = error_response(is_api, 413, str(exc))
        except RateLimited as exc:
            response = error_response(is_api, 429, str(exc))
            delay = self.state.clock.real_delay(exc.retry_after)
            response.headers["Retry-After"] = retry_after_header(exc.retry_after, delay)
        except InsufficientFunds as exc:
            response = error_response(is_api, INSUFFICIENT_BALANCE_STATUS, str(exc))
        except InvalidInput as exc:
            response = error_response(is_api, 400, str(exc))
        except Refused as exc:
            response = error_response(is_api, exc.status, exc.message)
        except web.HTTPException as exc:  # routing misses, oversized bodies
            response = error_response(is_api, exc.status, exc.reason)
        if response.status == 429:
            self.state.account.rate_limited += 1
        response.headers["X-Request-Id"] = uuid.uuid4().hex
        # The server's own now, from its wall clock (which a test may tie to the emulated one).
        response.headers["Date"] = email.utils.formatdate(
            self.state.wall_clock().timestamp(), usegmt=True
        )
        self.waits.notify()  # wakes Emulator.wait_for() conditions about requests and tasks
        return response

    # --- predictions ------------------------------------------------------------------------

    async def submit(self, request: web.Request) -> web.Response:
        """``POST /api/v3/{model}``: create a task; in sync mode, wait for its outcome."""
        model = request.match_info["model"]
        try:
            check_model_id(model)
        except InvalidInput:
            raise Refused(404, f"model not found: {model}") from None
        if model.split("/")[0] in _RESERVED:
            raise Refused(404, f"model not found: {model}")
        body = await read_json(request)
        here = origin(request)
        task = self.state.submit(
            model, body, request.query.get("webhook"), lambda url: self._own_file(url, here)
        )
        self.waits.notify()  # before a sync wait: tests wait for the task to exist, then advance
        if not task.sync_mode:
            return envelope(self._render(task, request))
        wait = 0.0 if request.get(SYNC_TIMEOUT_NOW) else self.state.sync_timeout
        deadline = task.submitted_at + wait
        finished = await self.waits.wait_until(
            lambda: self._settled(task, deadline),
            lambda: deadline if task.forced else min(task.finishes_at, deadline),
        )
        if not finished:
            raise Refused(503, "the emulator is shutting down")
        if task.id not in self.state.tasks:
            raise Refused(404, f"prediction {task.id} was deleted while waiting")
        timed_out = not task.status_at(self.state.clock.now()).status.is_terminal
        return envelope(self._render(task, request, sync_timed_out=timed_out))

    def _settled(self, task: TaskRecord, deadline: float) -> bool:
        now = self.state.clock.now()
        return (
            task.id not in self.state.tasks
            or task.status_at(now).status.is_terminal
            or now >= deadline
        )

    async def result(self, request: web.Request) -> web.Response:
        """``GET /api/v3/predictions/{id}[/result]``: the task's current state."""
        return envelope(self._render(self._task(request.match_info["id"]), request))

    async def history(self, request: web.Request) -> web.Response:
        """``POST /api/v3/predictions``: one page of recent tasks, newest first."""
        query, total, tasks = self.state.history(await read_json(request))
        items = [self._render(task, request) for task in tasks]
        return envelope({"page": query.page, "total": total, "items": items})

    async def delete(self, request: web.Request) -> web.Response:
        """``POST /api/v3/predictions/delete``: forget tasks for good (unknown ids ignored).

        A deleted task is gone: its result, its outputs and a second delete answer 404.
        """
        return envelope({"deleted_count": self.state.delete(await read_json(request))})

    async def delete_one(self, request: web.Request) -> web.Response:
        """``DELETE /api/v3/predictions/{id}``: forget one task (404 if there is none)."""
        task_id = request.match_info["id"]
        if not self.state.delete_one(task_id):
            raise Refused(404, f"prediction not found: {task_id}")
        return envelope({"id": task_id, "status": "deleted"})

    async def not_found(self, request: web.Request) -> web.Response:
        """Any route the platform does not have: 404 (an envelope under ``/api/``)."""
        raise Refused(404, f"no such route: {request.method} {request.path}")

    async def output(self, request: web.Request) -> web.Response:
        """A completed task's output file (no key: this stands in for the CDN).

        Outputs are served for ``output_retention`` emulated seconds from the submit (7 days,
        as on the platform). After that the URL answers 403 with S3's ``AccessDenied`` XML,
        what a CDN in front of a private bucket answers once a lifecycle rule deleted the
        object, while ``GET .../result`` still lists the URL. A file that never existed (an
        unknown or deleted task, a wrong name, a task not completed) answers 404 text. The
        platform's CDN is not known to tell the two apart, so a client should decide from the
        prediction: it still exists, completed, and ``created_at`` is older than the retention
        (the answer's ``Date`` header gives the server's now).
        """
        task_id, filename = request.match_info["id"], request.match_info["filename"]
        kept = self.state.output_kept(task_id, filename)
        if kept is Kept.EXPIRED:
            return expired_object_response()
        task = self.state.tasks.get(task_id)
        if kept is Kept.MISSING or task is None:
            raise Refused(404, "no such output")
        body, content_type = task.output.file(task.output.filenames().index(filename))
        return web.Response(body=body, content_type=content_type)

    def _own_file(self, url: str, server: str) -> bool | None:
        """Whether ``url``, if it points at this server, names a file that exists now."""
        parts, here = urlsplit(url), urlsplit(server)
        try:
            port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        except ValueError:
            return None
        host = (parts.hostname or "").lower()
        if port != here.port or host not in (here.hostname, *_LOOPBACK):
            return None
        return self.state.own_file_exists(parts.path)

    async def webhook_secret(self, request: web.Request) -> web.Response:
        """``GET /api/v3/webhook/secret``: the key webhook deliveries are signed with."""
        return envelope({"secret": self.state.webhook_secret})

    def _task(self, task_id: str) -> TaskRecord:
        task = self.state.tasks.get(task_id)
        if task is None:
            raise Refused(404, f"prediction not found: {task_id}")
        return task

    def _render(
        self, task: TaskRecord, request: web.Request, *, sync_timed_out: bool = False
    ) -> dict[str, Any]:
        now = self.state.clock.now()
        return render_task(task, now, origin(request), sync_timed_out=sync_timed_out)

    # --- uploads ----------------------------------------------------------------------------

    async def upload_ticket(self, request: web.Request) -> web.Response:
        """``POST /api/v3/media/uploads``: a pre-signed PUT URL and the file's future URL."""
        slot = self.state.uploads.announce(await read_json(request), self.state.clock.now())
        here = origin(request)
        signature = self.state.uploads.signature(slot.token)
        upload = {
            "method": "PUT",
            "url": f"{here}/storage/upload/{slot.token}?signature={signature}",
            "headers": {"Content-Type": slot.content_type},
        }
        return envelope({"upload": upload, "download_url": self._download_url(here, slot)})

    async def upload_put(self, request: web.Request) -> web.Response:
        """The pre-signed PUT: checks signature, signed content type and announced size."""
        slot = self.state.uploads.signed_slot(
            request.match_info["token"],
            request.query.get("signature", ""),
            self.state.clock.now(),
        )
        if slot is None:  # an expired ticket, as an expired pre-signed URL
            raise Refused(403, "invalid upload signature")
        if request.headers.get("Content-Type", "") != slot.content_type:
            # The content type is part of what was signed, as with S3 pre-signed URLs.
            raise Refused(403, f"Content-Type must be {slot.content_type!r}, as signed")
        if request.content_length is not None and request.content_length > slot.size:
            raise Refused(413, f"more than the announced {slot.size} bytes")
        slot.data = await read_at_most(request.content, slot.size)
        return web.Response(text="stored")

    async def upload_binary(self, request: web.Request) -> web.Response:
        """``POST /api/v3/media/upload/binary``: the older one-step multipart upload."""
        if not request.content_type.startswith("multipart/"):
            raise InvalidInput("body", request.content_type, "multipart/form-data")
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if isinstance(part, aiohttp.BodyPartReader) and part.name == "file":
                data = await read_at_most(part, MAX_UPLOAD)
                content_type = part.headers.get("Content-Type", "application/octet-stream")
                name = part.filename or "upload"
                slot = self.state.uploads.store(name, content_type, data, self.state.clock.now())
                return envelope({"download_url": self._download_url(origin(request), slot)})
        raise InvalidInput("file", None, "a multipart form field named 'file'")

    async def download(self, request: web.Request) -> web.Response:
        """An uploaded file, once its bytes have arrived (no key: this is storage).

        Past the retention it answers as an expired output does (see :meth:`output`).
        """
        token, filename = request.match_info["token"], request.match_info["filename"]
        kept = self.state.upload_kept(token, filename)
        if kept is Kept.EXPIRED:
            return expired_object_response()
        slot = self.state.uploads.slots.get(token)
        if kept is Kept.MISSING or slot is None or slot.data is None:
            raise Refused(404, "no such file")
        return web.Response(body=slot.data, content_type=slot.content_type)

    @staticmethod
    def _download_url(origin: str, slot: UploadSlot) -> str:
        return f"{origin}/storage/files/{slot.token}/{quote(slot.filename)}"


# --- helpers --------------------------------------------------------------------------------


def render_task(
    task: TaskRecord, now: float, origin: str, *, sync_timed_out: bool = False
) -> dict[str, Any]:
    """A task's prediction object at emulated time ``now``, URLs under ``origin``.

    The one rendering of a task: result, submit and history answers, and webhook bodies;
    each carries the task's ``input`` as submitted.
    """
    current = task.status_at(now)
    completed = current.status is Status.COMPLETED
    outputs: tuple[str, ...] = ()
    if completed and task.base64_output:
        files = (task.output.file(index)[0] for index in range(task.output.count))
        outputs = tuple(base64.b64encode(data).decode("ascii") for data in files)
    elif completed:
        outputs = tuple(f"{origin}/outputs/{task.id}/{name}" for name in task.output.filenames())
    code = SYNC_TIMEOUT_CODE if sync_timed_out else None
    if current.status is Status.FAILED and task.error_code is not None and task.forced is None:
        code = task.error_code
    prediction = Prediction(
        id=task.id,
        model=task.model,
        status=current.status,
        raw_status=current.raw,
        outputs=outputs,
        urls={"get": f"{origin}/api/v3/predictions/{task.id}/result"},
        has_nsfw_contents=(False,) * len(outputs),
        created_at=task.created_at,
        error=SYNC_TIMEOUT_ERROR if sync_timed_out else current.error,
        timings=Timings(round(task.duration * 1000) if completed else 0),
        code=code,
    )
    data: dict[str, Any] = converter.unstructure(prediction)
    data["input"] = task.input
    return data
