"""A batch's journal: an append-only JSON Lines file, made durable one record at a time.

Each line is one record: an item's key, its new status and what goes with it::

    {"v":1,"key":"…/0","index":0,"status":"submitting","model":"…","input":{…},"at":"…Z"}
    {"v":1,"key":"…/0","status":"submitted","id":"9c1d…","at":"…Z"}
    {"v":1,"key":"…/0","status":"completed","id":"9c1d…","prediction":{…},"files":[…],"at":"…Z"}
    {"v":1,"key":"…/1","status":"failed","id":"…","error":"…","prediction":{…},"at":"…Z"}
    {"v":1,"key":"…/2","status":"unsent","error":"…","at":"…Z"}

``submitting`` is written (and fsynced) *before* a submit is sent and ``submitted`` as soon
as it answers, so after any crash an item is in exactly one of these states: never sent (no
record, or ``unsent``), maybe sent (``submitting`` without an id: look it up in the
history), sent (an id), or finished. A record cut short by a crash is the last line; it is
dropped when the journal is opened again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from .._storage.url import is_store_url
from .._wire.convert import converter, parse_datetime, structure_prediction
from .._wire.models import Prediction
from ..errors import JournalError, WaveSpeedError

__all__ = ["Entry", "Journal", "JournalError", "MemoryJournal", "item_keys", "utc_now"]

VERSION = 1
STATUSES = ("submitting", "submitted", "completed", "failed", "unsent")


def item_keys(items: Sequence[tuple[str, Mapping[str, Any]]]) -> list[str]:
    """One key per ``(model, input)``: a hash of its canonical JSON and its occurrence number.

    Items are matched by content, so a batch file that was reordered or extended resumes too,
    and two identical items stay two items (``…/0`` and ``…/1``).
    """
    seen: dict[str, int] = {}
    keys = []
    for model, payload in items:
        canonical = json.dumps([model, payload], sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(canonical.encode()).hexdigest()[:16]
        occurrence = seen.get(digest, 0)
        seen[digest] = occurrence + 1
        keys.append(f"{digest}/{occurrence}")
    return keys


def utc_now() -> dt.datetime:
    """The wall clock, in UTC: journal times are compared with the server's ``created_at``."""
    return dt.datetime.now(dt.timezone.utc)


@attrs.define
class Entry:
    """What the journal knows of one item: the fold of its records, in order."""

    key: str
    status: str
    index: int = -1
    model: str = ""
    input: dict[str, Any] = attrs.field(factory=dict)
    at: dt.datetime | None = None  # when the last submit was about to be sent
    prediction_id: str | None = None
    prediction: Prediction | None = None
    files: tuple[Path | str, ...] = ()
    error: str = ""

    def apply(self, record: Mapping[str, Any]) -> None:
        """Fold one later record into the entry."""
        self.status = record["status"]
        if self.status == "submitting":
            self.index = int(record.get("index", self.index))
            self.model = str(record.get("model", ""))
            self.input = dict(record.get("input") or {})
            self.at = parse_datetime(str(record.get("at", "")))
            self.prediction_id = None
        elif self.status == "unsent":
            self.prediction_id = None
        else:
            self.prediction_id = record.get("id") or self.prediction_id
        self.error = str(record.get("error", ""))
        if "prediction" in record:
            self.prediction = structure_prediction(record["prediction"])
        # Where each output was kept: a local path, or an object store's URL (not a Path).
        self.files = tuple(
            name if is_store_url(name) else Path(name) for name in record.get("files", ())
        )


class Journal:
    """An open journal: its entries by key, and the appending of records.

    Only one process may hold a journal at a time (an exclusive ``flock`` where the platform
    has one): two runs of one batch side by side would each submit the same items.
    """

    def __init__(self, path: Path, fd: int | None, entries: dict[str, Entry]) -> None:
        self.path = path
        self.entries = entries
        self._fd: int | None = fd
        self._failure: str | None = None  # set by a failed write: nothing is written after it

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Journal:
        """Open (or create) the journal at ``path``, read it, and lock it for appending."""
        path = Path(path)
        created = not path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise JournalError(f"cannot open the journal {path}: {exc.strerror}") from exc
        try:
            _lock(fd, path)
            entries = _read(fd, path)
            if created:  # the file's name must survive a crash too, not only its contents
                _fsync_directory(path.parent)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, entries)

    def close(self) -> None:
        """Release the file (and its lock)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- records ------------------------------------------------------------------------------

    def submitting(
        self, key: str, index: int, model: str, payload: Mapping[str, Any], at: dt.datetime
    ) -> None:
        """Record that a submit of ``payload`` is about to be sent (durable before it is)."""
        self._append(key, "submitting", index=index, model=model, input=dict(payload), at=_time(at))

    def submitted(self, key: str, prediction_id: str) -> None:
        """Record the task id a submit answered (or the history revealed)."""
        self._append(key, "submitted", id=prediction_id)

    def completed(self, key: str, prediction: Prediction, files: Sequence[Path | str]) -> None:
        """Record a finished item: its prediction and where its outputs were kept."""
        self._append(
            key,
            "completed",
            id=prediction.id,
            prediction=_storable(prediction),
            files=[str(path) for path in files],
        )

    def failed(self, key: str, error: str, prediction: Prediction | None = None) -> None:
        """Record an item that ended without outputs: a failed task, or a rejected input."""
        fields: dict[str, Any] = {"error": error}
        if prediction is not None:
            fields.update(id=prediction.id, prediction=_storable(prediction))
        self._append(key, "failed", **fields)

    def unsent(self, key: str, error: str) -> None:
        """Record that a submit provably created nothing (refused before the task existed)."""
        self._append(key, "unsent", error=error)

    def _append(self, key: str, status: str, **fields: Any) -> None:
        record = {"v": VERSION, "key": key, "status": status, **fields}
        record.setdefault("at", _time(utc_now()))
        data = (json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
        prediction_id = fields.get("id")
        if self._failure is not None:
            raise JournalError(
                f"the journal {self.path} failed earlier ({self._failure}); nothing more is"
                f" recorded (item {key}: {status})",
                prediction_id=prediction_id,
            )
        try:
            self._write(data)
        except OSError as exc:
            # A half-written line is dropped when the journal is read again; what matters now
            # is that the task this record names is not lost: the error carries its id.
            self._failure = exc.strerror or type(exc).__name__
            raise JournalError(
                f"cannot write to the journal {self.path}: {self._failure} (item {key}: {status})",
                prediction_id=prediction_id,
            ) from exc
        entry = self.entries.get(key)
        if entry is None:
            self.entries[key] = entry = Entry(key, status)
        entry.apply(json.loads(data))

    def _write(self, data: bytes) -> None:
        # Synchronous on purpose: the record must be on disk before the next step (the submit)
        # starts, and nothing can interrupt a write halfway between two awaits.
        if self._fd is None:
            raise JournalError(f"the journal {self.path} is closed")
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        os.fsync(self._fd)


class MemoryJournal(Journal):
    """The journal of a batch that keeps none: the same bookkeeping, in memory only."""

    def __init__(self) -> None:
        super().__init__(Path(), None, {})

    def _write(self, data: bytes) -> None:
        pass


def _time(when: dt.datetime) -> str:
    text: str = converter.unstructure(when)
    return text


def _storable(prediction: Prediction) -> dict[str, Any]:
    """The prediction as the journal keeps it: base64 outputs are dropped (the files stay)."""
    data: dict[str, Any] = converter.unstructure(prediction)
    data["outputs"] = [output for output in prediction.outputs if "://" in output[:16]]
    data.pop("input", None)  # the submitting record has it already
    return data


def _read(fd: int, path: Path) -> dict[str, Entry]:
    with os.fdopen(os.dup(fd), "rb") as file:
        content = file.read()
    lines = content.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    entries: dict[str, Entry] = {}
    for number, line in enumerate(lines, 1):
        if line.strip():
            _fold(entries, _parse(line, path, number), path, number)
    if tail.strip():
        try:
            record = _parse(tail, path, len(lines) + 1)
        except JournalError:
            # A record cut short by a crash: it never counted. Drop it, so the next record
            # starts on a line of its own.
            os.ftruncate(fd, len(content) - len(tail))
        else:
            os.write(fd, b"\n")
            _fold(entries, record, path, len(lines) + 1)
        os.fsync(fd)
    return entries


#: The type each optional field of a record must have, when present.
_FIELD_TYPES: dict[str, tuple[type[Any], ...]] = {
    "index": (int,),
    "model": (str,),
    "input": (dict,),
    "at": (str,),
    "id": (str,),
    "prediction": (dict,),
    "files": (list,),
    "error": (str,),
}


def _parse(line: bytes, path: Path, number: int) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        raise JournalError(f"{path}:{number}: not a JSON record") from None
    if not isinstance(record, dict) or record.get("v") != VERSION:
        raise JournalError(f"{path}:{number}: not a version {VERSION} batch journal record")
    if not isinstance(record.get("key"), str) or record.get("status") not in STATUSES:
        raise JournalError(f"{path}:{number}: a record needs a key and a known status")
    for name, types in _FIELD_TYPES.items():
        value = record.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            raise JournalError(f"{path}:{number}: {name} is a {type(value).__name__}")
    if not all(isinstance(name, str) for name in record.get("files") or ()):
        raise JournalError(f"{path}:{number}: files must be a list of paths")
    return record


def _fold(entries: dict[str, Entry], record: dict[str, Any], path: Path, number: int) -> None:
    key = record["key"]
    entry = entries.get(key)
    if entry is None:
        entries[key] = entry = Entry(key, record["status"])
    try:
        entry.apply(record)
    except (WaveSpeedError, TypeError, ValueError) as exc:
        raise JournalError(f"{path}:{number}: unreadable record ({exc})") from exc


def _lock(fd: int, path: Path) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; one run per journal is then up to you
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise JournalError(
            f"the journal {path} is in use by another run of this batch; wait for it to end"
        ) from None


def _fsync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a directory
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
