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
from typing import Any, TypeGuard

import attrs

from .._convert import parse_datetime, structure_payload
from .._models import ImageEdit, Status, TextToVideo
from ..errors import InvalidInput
from ._clock import Clock
from ._faults import FaultPlan
from ._media import Colour, colour_for
from ._uploads import UploadStore

__all__ = [
    "FAIL_MARKER",
    "SYNC_TIMEOUT_CODE",
    "SYNC_TIMEOUT_ERROR",
    "EmulatorState",
    "OutputSpec",
    "RequestRecord",
    "TaskRecord",
    "TaskStatus",
    "payload_key",
]

IMAGE_DURATION = 3.0
VIDEO_DURATION = 30.0
FAIL_MARKER = "[fail]"
SYNC_TIMEOUT_CODE = 5004
SYNC_TIMEOUT_ERROR = "Sync mode timed out, please query the result later"
DEFAULT_IMAGE_SIZE = (1024, 1024)
_GENERATED_SIDE = (64, 4096)  # bounds for a free-form model's "size", so no one asks for 1e9 px
_HISTORY_WINDOW = dt.timedelta(hours=24)
_RETENTION = dt.timedelta(days=7)
_SEED_MODELS: dict[str, type[Any]] = {
    TextToVideo.model_id: TextToVideo,
    ImageEdit.model_id: ImageEdit,
}


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def payload_key(model: str, payload: Mapping[str, Any]) -> str:
    """The canonical JSON of ``(model, input)``: the key of ``created_per_payload()``."""
    return json.dumps([model, payload], sort_keys=True, separators=(",", ":"))


@attrs.frozen
class OutputSpec:
    """What a completed task returns: the fixture MP4, or a PNG of a size and colour."""

    kind: str  # "video" or "image"
    width: int = 0
    height: int = 0
    colour: Colour = (0, 0, 0)

    @property
    def extension(self) -> str:
        """The output file's extension, without the dot."""
        return "mp4" if self.kind == "video" else "png"


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

    @property
    def finishes_at(self) -> float:
        """The emulated time at which the task becomes terminal (unless forced)."""
        return self.submitted_at + self.duration

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
        elapsed = now - self.submitted_at
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


@attrs.frozen
class HistoryQuery:
    """A validated ``POST /api/v3/predictions`` body."""

    page: int
    page_size: int
    model: str | None = None
    status: str | None = None
    created_after: dt.datetime | None = None
    created_before: dt.datetime | None = None


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
    ) -> None:
        self.clock = clock or Clock()
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
        return VIDEO_DURATION if _is_video(model) else IMAGE_DURATION

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

    def submit(self, model: str, body: object, webhook: str | None = None) -> TaskRecord:
        """Validate a submit and create its task; raises :class:`InvalidInput` (a 400)."""
        if not isinstance(body, dict):
            raise InvalidInput("body", type(body).__name__, "a JSON object")
        if webhook is not None and body.get("enable_base64_output") is True:
            raise InvalidInput("webhook", webhook, "absent when enable_base64_output is set")
        payload_model = _SEED_MODELS.get(model)
        size = None
        if payload_model is not None:
            payload = structure_payload(body, payload_model)
            size = getattr(payload, "size", None)
        task_id = uuid.uuid4().hex
        output = _output_for(model, body, size, task_id)
        error = self._scripted_failures.popleft() if self._scripted_failures else None
        prompt = body.get("prompt")
        if error is None and isinstance(prompt, str) and FAIL_MARKER in prompt:
            error = f"The prompt asked for a failure ({FAIL_MARKER} marker)"
        self.submit_count += 1
        task = TaskRecord(
            id=task_id,
            model=model,
            input=body,
            created_at=self.wall_clock(),
            submitted_at=self.clock.now(),
            duration=self.duration_for(model),
            output=output,
            sequence=self.submit_count,
            clock=self.clock,
            webhook=webhook,
            scripted_error=error,
        )
        self.tasks[task_id] = task
        if webhook is not None:
            self.webhook_tasks[task_id] = task
        self._created[payload_key(model, body)] += 1
        return task

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
        return sum(self.tasks.pop(task_id, None) is not None for task_id in set(ids))


def parse_history_query(body: object) -> HistoryQuery:
    """Validate a history body; raises :class:`InvalidInput`."""
    if not isinstance(body, dict):
        raise InvalidInput("body", type(body).__name__, "a JSON object")
    page, page_size = body.get("page"), body.get("page_size")
    if not _is_int(page) or page < 1:
        raise InvalidInput("page", page, "an integer >= 1")
    if not _is_int(page_size) or not 1 <= page_size <= 100:
        raise InvalidInput("page_size", page_size, "an integer from 1 to 100")
    model, status = body.get("model"), body.get("status")
    for name, value in (("model", model), ("status", status)):
        if value is not None and not isinstance(value, str):
            raise InvalidInput(name, value, "a string")
    return HistoryQuery(
        page,
        page_size,
        model or None,
        status or None,
        _timestamp(body, "created_after"),
        _timestamp(body, "created_before"),
    )


def _timestamp(body: Mapping[str, Any], name: str) -> dt.datetime | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    parsed = parse_datetime(value) if isinstance(value, str) else None
    if parsed is None:
        raise InvalidInput(name, value, "an ISO-8601 timestamp")
    return parsed


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_video(model: str) -> bool:
    return "video" in model


def _output_for(
    model: str, body: Mapping[str, Any], size: tuple[int, int] | None, task_id: str
) -> OutputSpec:
    if _is_video(model):
        return OutputSpec("video")
    width, height = size or _free_size(body.get("size")) or DEFAULT_IMAGE_SIZE
    seed = body.get("seed")
    # A chosen seed gives a reproducible picture, as it would on the platform.
    key: object = seed if _is_int(seed) and seed >= 0 else task_id
    return OutputSpec("image", width, height, colour_for(key))


def _free_size(value: object) -> tuple[int, int] | None:
    """``"W*H"`` (or ``"WxH"``) from a model the emulator does not validate, if sensible."""
    if not isinstance(value, str):
        return None
    parts = value.lower().replace("x", "*").split("*")
    try:
        width, height = (int(part) for part in parts)
    except ValueError:
        return None
    low, high = _GENERATED_SIDE
    return (width, height) if low <= width <= high and low <= height <= high else None
