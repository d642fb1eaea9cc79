"""The emulator's state, with no I/O: tasks, failure scripting, retention, counters.

A task's status is derived from the clock whenever it is read (see :mod:`._tasks`); what a
task holds is dropped with it when it is deleted. Outputs and uploads are served for
``output_retention`` emulated seconds, then expire.
"""

from __future__ import annotations

import collections
import datetime as dt
import enum
import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote

from .._wire.limits import Limits
from .._wire.models import Status
from ..errors import InvalidInput
from ._account import DEFAULT_BALANCE, Account
from ._arguments import check_count, check_durations, check_number, check_seconds
from ._catalog import UNLISTED, model_spec
from ._clock import Clock
from ._faults import FaultPlan
from ._history import HistoryQuery, parse_history_query
from ._outputs import MEDIA_ACCESS_CODE, media_access_error, output_for
from ._requests import DEFAULT_LOG_SIZE, RequestLog, RequestRecord
from ._schema import validate
from ._tasks import TaskRecord, TaskStatus
from ._uploads import UploadStore

__all__ = [
    "DEFAULT_RETENTION",
    "FAIL_MARKER",
    "SYNC_TIMEOUT_CODE",
    "SYNC_TIMEOUT_ERROR",
    "EmulatorState",
    "Kept",
    "RequestRecord",
    "TaskRecord",
    "TaskStatus",
    "payload_key",
]

FAIL_MARKER = "[fail]"
SYNC_TIMEOUT_CODE = 5004
SYNC_TIMEOUT_ERROR = "Sync mode timed out, please query the result later"
#: How long, in emulated seconds, outputs and uploads are kept: the platform's 7 days.
DEFAULT_RETENTION = 7 * 24 * 3600.0
_HISTORY_WINDOW = dt.timedelta(hours=24)
_RETENTION = dt.timedelta(days=7)
_WEBHOOK_SCHEMES = ("http://", "https://")


_OwnUrl = Callable[[str], "bool | None"]


def _not_own(url: str) -> bool | None:
    return None


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def payload_key(model: str, payload: Mapping[str, Any]) -> str:
    """The key of ``created_per_payload()`` for ``(model, input)``.

    A digest of their canonical JSON, so the count stays small however big the inputs.
    """
    canonical = json.dumps([model, payload], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class Kept(enum.Enum):
    """Whether a file (an output or an upload) is served: kept, expired, or never existed."""

    KEPT = "kept"
    EXPIRED = "expired"
    MISSING = "missing"


class EmulatorState:
    """Everything the emulator knows; the aiohttp app is a thin shell around it.

    ``clock`` and ``wall_clock`` are injectable so tests control time completely.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        durations: Mapping[str, float] | None = None,
        sync_timeout: float = 60.0,
        clock: Clock | None = None,
        wall_clock: Callable[[], dt.datetime] | None = None,
        balance: float = DEFAULT_BALANCE,
        limits: Limits | None = None,
        output_retention: float = DEFAULT_RETENTION,
        request_log_size: int = DEFAULT_LOG_SIZE,
    ) -> None:
        self.clock = clock or Clock()
        #: Balance, rate window and concurrency slots.
        self.account = Account(check_number("balance", balance), limits)
        self.wall_clock = wall_clock or _utc_now
        self.faults = FaultPlan()
        self.sync_timeout = check_seconds("sync_timeout", sync_timeout)
        #: Emulated seconds a task's outputs (and an upload) are served after its submit.
        self.output_retention = check_seconds("output_retention", output_retention, positive=True)
        self.tasks: dict[str, TaskRecord] = {}
        self.submit_count = 0
        #: The newest requests received (a ring: see :class:`RequestLog`).
        self.requests = RequestLog(check_count("request_log_size", request_log_size))
        self.uploads = UploadStore(self.output_retention)
        self._api_key = api_key
        self._durations = check_durations(durations)
        self._scripted_failures: collections.deque[str] = collections.deque()
        self._created: collections.Counter[str] = collections.Counter()
        self.webhook_secret = f"whsec_{secrets.token_urlsafe(24)}"
        #: Tasks submitted with a webhook whose delivery is not made yet (the dispatcher's).
        self.webhook_tasks: dict[str, TaskRecord] = {}

    # --- auth and bookkeeping ---------------------------------------------------------------

    def authorized(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header value grants access to the API."""
        scheme, _, key = (authorization or "").strip().partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return False
        if self._api_key is None:
            return True
        return hmac.compare_digest(key.encode(), self._api_key.encode())

    def record_request(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        had_authorization: bool,
        peer: str = "",
    ) -> RequestRecord:
        """Remember a request for the tests' inspection."""
        now, wall = self.clock.now(), self.wall_clock()
        return self.requests.add(method, path, query, had_authorization, now, wall, peer)

    def auth_leaks(self) -> list[RequestRecord]:
        """Requests to storage or media URLs that carried an ``Authorization`` header."""
        return self.requests.auth_leaks()

    def created_per_payload(self) -> collections.Counter[str]:
        """How many tasks were created per ``payload_key(model, input)`` (deleted ones too)."""
        return collections.Counter(self._created)

    # --- scripting --------------------------------------------------------------------------

    def duration_for(self, model: str) -> float:
        """Emulated seconds from submit to outcome for tasks of ``model``."""
        if model in self._durations:
            return self._durations[model]
        return (model_spec(model) or UNLISTED).duration

    def set_duration(self, model: str, seconds: float) -> None:
        """Make later tasks of ``model`` take ``seconds`` emulated seconds."""
        self._durations[model] = check_seconds("seconds", seconds)

    def fail_next(self, count: int = 1, error: str = "emulated failure") -> None:
        """Make the next ``count`` submitted tasks fail with ``error`` when their time is up."""
        self._scripted_failures.extend([error] * count)

    def set_status(self, task_id: str, raw_status: str, error: str = "") -> None:
        """Force any status string on a task from now on (``KeyError`` if unknown)."""
        self.tasks[task_id].forced = TaskStatus(raw_status, error)

    # --- tasks ------------------------------------------------------------------------------

    def submit(
        self, model: str, body: object, webhook: str | None = None, own: _OwnUrl = _not_own
    ) -> TaskRecord:
        """Admit a submit and create its task, debiting its price.

        Raises, creating nothing: :class:`RateLimited` (a 429) first, as the platform's
        gateway would, then :class:`InvalidInput` (a 400), then :class:`InsufficientFunds`.
        ``webhook`` is the ``?webhook=`` query; a ``webhook_url`` field of the body is the
        same (it is not a model input, so it is not kept in ``input``).
        ``own(url)`` says whether a URL of this emulator exists (for input files).
        """
        now = self.clock.now()
        self.account.check_rate(now)
        if not isinstance(body, dict):
            raise InvalidInput("body", type(body).__name__, "a JSON object")
        body, webhook = _webhook_of(body, webhook)
        spec = model_spec(model)
        if spec is not None:
            validate(spec.schema, body)
        spec = spec or UNLISTED
        price = spec.price_for(body)
        self.account.charge(price)
        task_id = uuid.uuid4().hex
        error, code = self._planned_failure(body, own)
        duration = self.duration_for(model)
        limited = self.account.limits.max_concurrent_tasks is not None
        live = [task.slot for task in self.tasks.values() if task.slot and task.slot.end > now]
        self.submit_count += 1
        task = TaskRecord(
            id=task_id,
            model=model,
            input=body,
            created_at=self.wall_clock(),
            submitted_at=now,
            duration=duration,
            output=output_for(spec, body, task_id),
            sequence=self.submit_count,
            clock=self.clock,
            webhook=webhook,
            scripted_error=error,
            slot=self.account.accept(now, duration, live if limited else []),
            price=price,
            error_code=code,
        )
        self.tasks[task_id] = task
        self.account.ledger.record(task_id, model, price, task.created_at)
        if webhook is not None:
            self.webhook_tasks[task_id] = task
        self._created[payload_key(model, body)] += 1
        return task

    def _planned_failure(self, body: dict[str, Any], own: _OwnUrl) -> tuple[str | None, int | None]:
        """The error (and ``data.code``) a new task will fail with when due, if any."""
        if self._scripted_failures:
            return self._scripted_failures.popleft(), None
        prompt = body.get("prompt")
        if isinstance(prompt, str) and FAIL_MARKER in prompt:
            return f"The prompt asked for a failure ({FAIL_MARKER} marker)", None
        media_error = media_access_error(body, own)
        return media_error, MEDIA_ACCESS_CODE if media_error else None

    def own_file_exists(self, path: str) -> bool:
        """Whether ``path`` is an output or an uploaded file this emulator serves now."""
        parts = [unquote(part) for part in path.strip("/").split("/")]
        if len(parts) == 3 and parts[0] == "outputs":
            return self.output_kept(parts[1], parts[2]) is Kept.KEPT
        if len(parts) == 4 and parts[:2] == ["storage", "files"]:
            return self.upload_kept(parts[2], parts[3]) is Kept.KEPT
        return False

    def expired(self, created: float) -> bool:
        """Whether a file made at emulated time ``created`` is past the retention now."""
        return self.clock.now() - created >= self.output_retention

    def output_kept(self, task_id: str, filename: str) -> Kept:
        """Whether output ``filename`` of task ``task_id`` is served, expired or never was."""
        task = self.tasks.get(task_id)
        if task is None or task.status is not Status.COMPLETED:
            return Kept.MISSING
        if filename not in task.output.filenames():
            return Kept.MISSING
        return Kept.EXPIRED if self.expired(task.submitted_at) else Kept.KEPT

    def upload_kept(self, token: str, filename: str) -> Kept:
        """Whether uploaded file ``token/filename`` is served, expired or never was."""
        self.uploads.sweep(self.clock.now())
        slot = self.uploads.slots.get(token)
        if slot is None or slot.filename != filename or (slot.data is None and not slot.expired):
            return Kept.MISSING
        return Kept.EXPIRED if slot.expired else Kept.KEPT

    def history(self, body: object) -> tuple[HistoryQuery, int, list[TaskRecord]]:
        """Answer a history query: the query, the total matched and one page, newest first.

        Tasks past the retention are not listed (though their results still answer), nor,
        under a lagging-history fault, tasks younger than the lag.
        """
        query = parse_history_query(body)
        wall_now = self.wall_clock()
        after = max(query.created_after or wall_now - _HISTORY_WINDOW, wall_now - _RETENTION)
        now = self.clock.now()
        youngest = now - self.faults.history_lag
        matched = [
            task
            for task in sorted(self.tasks.values(), key=lambda task: -task.sequence)
            if task.created_at >= after
            and (query.created_before is None or task.created_at <= query.created_before)
            and (query.model is None or task.model == query.model)
            and (query.status is None or task.status_at(now).raw == query.status)
            and task.submitted_at <= youngest
            and not self.expired(task.submitted_at)
        ]
        start = (query.page - 1) * query.page_size
        return query, len(matched), matched[start : start + query.page_size]

    def delete(self, body: object) -> int:
        """Delete the tasks named by ``{"ids": [...]}``; returns how many existed."""
        ids = body.get("ids") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not all(isinstance(item, str) for item in ids):
            raise InvalidInput("ids", ids, "a list of prediction ids")
        return sum(self.delete_one(task_id) for task_id in set(ids))

    def delete_one(self, task_id: str) -> bool:
        """Forget one task for good, freeing its slot; ``False`` if there was none."""
        task = self.tasks.pop(task_id, None)
        if task is None:
            return False
        self.webhook_tasks.pop(task_id, None)  # nothing keeps its input alive
        if task.slot is not None:
            now = self.clock.now()
            queued = [
                (other.slot, other.submitted_at, other.duration)
                for other in sorted(self.tasks.values(), key=lambda other: other.sequence)
                if other.slot is not None and other.slot.start > now
            ]
            self.account.release(task.slot, now, queued)
        return True


def _webhook_of(body: dict[str, Any], query: str | None) -> tuple[dict[str, Any], str | None]:
    """Split a submit body into the model's input and the webhook URL (query or body).

    The platform documents both ``?webhook=`` and a ``webhook_url`` body field; a body field
    that is not an http(s) URL, or that names another URL than the query, is refused.
    """
    webhook = query
    if "webhook_url" in body:
        body = dict(body)
        field = body.pop("webhook_url")
        if not isinstance(field, str) or not field.lower().startswith(_WEBHOOK_SCHEMES):
            raise InvalidInput("webhook_url", field, "an http(s) URL")
        if query is not None and query != field:
            raise InvalidInput("webhook_url", field, "the ?webhook= URL when both are given")
        webhook = field
    if webhook is not None and body.get("enable_base64_output") is True:
        name = "webhook" if query is not None else "webhook_url"
        raise InvalidInput(name, webhook, "absent when enable_base64_output is set")
    return body, webhook
