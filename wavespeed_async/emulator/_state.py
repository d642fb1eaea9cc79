"""The emulator's state, with no I/O: tasks, their lifecycle, failure scripting, counters.

A task's status is never stored as it progresses: it is derived from the clock whenever it
is read, so no background work runs per prediction and a frozen clock freezes every task.
"""

from __future__ import annotations

import collections
import datetime as dt
import hmac
import json
import secrets
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote

import attrs

from .._wire.limits import Limits
from .._wire.models import Status
from ..errors import InvalidInput
from ._account import DEFAULT_BALANCE, Account, Slot
from ._catalog import UNLISTED, model_spec
from ._clock import Clock
from ._faults import FaultPlan
from ._history import HistoryQuery, parse_history_query
from ._outputs import MEDIA_ACCESS_CODE, OutputSpec, media_access_error, output_for
from ._schema import validate
from ._uploads import UploadStore

__all__ = [
    "FAIL_MARKER",
    "SYNC_TIMEOUT_CODE",
    "SYNC_TIMEOUT_ERROR",
    "EmulatorState",
    "RequestRecord",
    "TaskRecord",
    "TaskStatus",
    "payload_key",
]

FAIL_MARKER = "[fail]"
SYNC_TIMEOUT_CODE = 5004
SYNC_TIMEOUT_ERROR = "Sync mode timed out, please query the result later"
_HISTORY_WINDOW = dt.timedelta(hours=24)
_RETENTION = dt.timedelta(days=7)


_OwnUrl = Callable[[str], "bool | None"]


def _not_own(url: str) -> bool | None:
    return None


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def payload_key(model: str, payload: Mapping[str, Any]) -> str:
    """The canonical JSON of ``(model, input)``: the key of ``created_per_payload()``."""
    return json.dumps([model, payload], sort_keys=True, separators=(",", ":"))


@attrs.frozen
class TaskStatus:
    """A task's status at one instant: the raw text the API would send, and the error."""

    raw: str
    error: str = ""

    @property
    def status(self) -> Status:
        """The parsed status (``UNKNOWN`` for strings the library does not know)."""
        return Status.parse(self.raw)


@attrs.define(eq=False)
class TaskRecord:
    """One submitted task. ``submitted_at`` is on the emulated clock, ``created_at`` wall time.

    ``slot`` is when it runs: from submit, or later when it waited for a concurrency slot.
    ``raw_status``, ``status`` and ``error`` are read from the clock each time.
    """

    id: str
    model: str
    input: dict[str, Any]
    created_at: dt.datetime
    submitted_at: float
    duration: float
    output: OutputSpec
    sequence: int
    clock: Clock = attrs.field(repr=False)
    webhook: str | None = None
    scripted_error: str | None = None
    forced: TaskStatus | None = None
    slot: Slot | None = None
    price: float = 0.0
    #: ``data.code`` once failed (1402: an input file could not be fetched).
    error_code: int | None = None

    @property
    def started_at(self) -> float:
        """The emulated time the task starts running (``created`` until then)."""
        return self.submitted_at if self.slot is None else self.slot.start

    @property
    def finishes_at(self) -> float:
        """The emulated time at which the task becomes terminal (unless forced)."""
        return self.started_at + self.duration

    @property
    def base64_output(self) -> bool:
        """Whether outputs are returned as bare base64 strings instead of URLs."""
        return self.input.get("enable_base64_output") is True

    @property
    def sync_mode(self) -> bool:
        """Whether the submit asked to wait for the outcome."""
        return self.input.get("enable_sync_mode") is True

    def status_at(self, now: float) -> TaskStatus:
        """The status at emulated time ``now``: created, processing, then completed or failed."""
        if self.forced is not None:
            return self.forced
        elapsed = now - self.started_at
        if elapsed >= self.duration:
            if self.scripted_error is not None:
                return TaskStatus("failed", self.scripted_error)
            return TaskStatus("completed")
        return TaskStatus("processing" if elapsed > 0 else "created")

    @property
    def raw_status(self) -> str:
        """The status string right now."""
        return self.status_at(self.clock.now()).raw

    @property
    def status(self) -> Status:
        """The parsed status right now."""
        return self.status_at(self.clock.now()).status

    @property
    def error(self) -> str:
        """The error right now ("" unless failed)."""
        return self.status_at(self.clock.now()).error


@attrs.frozen
class RequestRecord:
    """One request the emulator received. The key itself is never kept, only its presence.

    ``at`` is the emulated clock's reading, ``wall`` the real time, ``peer`` the client's
    ``host:port`` (one per connection, so tests can count the connections a client opened).
    """

    method: str
    path: str
    query: dict[str, str]
    had_authorization: bool
    at: float
    wall: dt.datetime
    peer: str = ""

    @property
    def is_api(self) -> bool:
        """Whether the request went to the API (where the key belongs) rather than storage."""
        return self.path.startswith("/api/")


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
    ) -> None:
        self.clock = clock or Clock()
        #: Balance, rate window and concurrency slots.
        self.account = Account(balance, limits)
        self.wall_clock = wall_clock or _utc_now
        self.faults = FaultPlan()
        self.sync_timeout = sync_timeout
        self.tasks: dict[str, TaskRecord] = {}
        self.submit_count = 0
        self.requests: list[RequestRecord] = []
        self.uploads = UploadStore()
        self._api_key = api_key
        self._durations = dict(durations or {})
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
        record = RequestRecord(method, path, dict(query), had_authorization, now, wall, peer)
        self.requests.append(record)
        return record

    def auth_leaks(self) -> list[RequestRecord]:
        """Requests to storage or media URLs that carried an ``Authorization`` header."""
        return [req for req in self.requests if req.had_authorization and not req.is_api]

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
        if seconds < 0:
            raise ValueError(f"a duration cannot be negative ({seconds})")
        self._durations[model] = seconds

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
        ``own(url)`` says whether a URL of this emulator exists (for input files).
        """
        now = self.clock.now()
        self.account.check_rate(now)
        if not isinstance(body, dict):
            raise InvalidInput("body", type(body).__name__, "a JSON object")
        if webhook is not None and body.get("enable_base64_output") is True:
            raise InvalidInput("webhook", webhook, "absent when enable_base64_output is set")
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
            task = self.tasks.get(parts[1])
            return (
                task is not None
                and task.status is Status.COMPLETED
                and parts[2] in task.output.filenames()
            )
        if len(parts) == 4 and parts[:2] == ["storage", "files"]:
            slot = self.uploads.slots.get(parts[2])
            return slot is not None and slot.data is not None and slot.filename == parts[3]
        return False

    def history(self, body: object) -> tuple[HistoryQuery, int, list[TaskRecord]]:
        """Answer a history query: the query, the total matched and one page, newest first."""
        query = parse_history_query(body)
        wall_now = self.wall_clock()
        after = max(query.created_after or wall_now - _HISTORY_WINDOW, wall_now - _RETENTION)
        now = self.clock.now()
        matched = [
            task
            for task in sorted(self.tasks.values(), key=lambda task: -task.sequence)
            if task.created_at >= after
            and (query.created_before is None or task.created_at <= query.created_before)
            and (query.model is None or task.model == query.model)
            and (query.status is None or task.status_at(now).raw == query.status)
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
        if task.slot is not None:
            now = self.clock.now()
            queued = [
                (other.slot, other.submitted_at, other.duration)
                for other in sorted(self.tasks.values(), key=lambda other: other.sequence)
                if other.slot is not None and other.slot.start > now
            ]
            self.account.release(task.slot, now, queued)
        return True
