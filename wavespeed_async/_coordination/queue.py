"""One batch shared by many machines, on a Redis Stream and a consumer group.

However many workers start the same batch, :meth:`RedisBatchQueue.enqueue_once` adds its items
once. Each worker takes items with :meth:`~RedisBatchQueue.claim`, and marks each done or
failed with :meth:`~RedisBatchQueue.ack`; an item held by a worker that died (not acked within
``idle_timeout``) goes to the next worker that claims. A reclaimed item may have been
submitted already, so submit it under its :attr:`QueueItem.idempotency_key`: the ledger then
hands back the first task instead of paying for a second one.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

__all__ = ["QueueItem", "QueueStatus", "RedisBatchQueue"]

GROUP = "workers"

#: KEYS: stream, meta hash. ARGV: the items as JSON. 1 when this call enqueued them.
ENQUEUE = """
if redis.call('HSETNX', KEYS[2], 'total', #ARGV) == 0 then return 0 end
redis.call('XGROUP', 'CREATE', KEYS[1], 'workers', '0', 'MKSTREAM')
for i = 1, #ARGV do
  redis.call('XADD', KEYS[1], '*', 'index', i - 1, 'item', ARGV[i])
end
return 1
"""

#: KEYS: stream. ARGV: consumer, min idle ms, count, reclaim cursor.
#: Returns {next cursor, entries}: idle items of dead workers first, then new ones.
CLAIM = """
local count = tonumber(ARGV[3])
local reclaimed = redis.call('XAUTOCLAIM', KEYS[1], 'workers', ARGV[1], ARGV[2], ARGV[4],
                             'COUNT', count)
local out = reclaimed[2]
if #out < count then
  local read = redis.call('XREADGROUP', 'GROUP', 'workers', ARGV[1], 'COUNT', count - #out,
                          'STREAMS', KEYS[1], '>')
  if read then
    for _, entry in ipairs(read[1][2]) do table.insert(out, entry) end
  end
end
return {reclaimed[1], out}
"""

#: KEYS: stream, meta hash. ARGV: entry id, 'done' or 'failed'. Counts each item once.
ACK = """
if redis.call('XACK', KEYS[1], 'workers', ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
  return 1
end
return 0
"""

#: KEYS: stream. ARGV: consumer, entry ids. Restarts the idle time of the entries the
#: consumer still holds (not of one another worker took meanwhile); returns how many.
TOUCH = """
local held = 0
for i = 2, #ARGV do
  if #redis.call('XPENDING', KEYS[1], 'workers', ARGV[i], ARGV[i], 1, ARGV[1]) == 1 then
    redis.call('XCLAIM', KEYS[1], 'workers', ARGV[1], 0, ARGV[i], 'JUSTID')
    held = held + 1
  end
end
return held
"""

#: KEYS: stream, meta hash. Returns {total, done, failed, running}.
STATUS = """
local m = redis.call('HMGET', KEYS[2], 'total', 'done', 'failed')
local running = 0
if redis.call('EXISTS', KEYS[1]) == 1 then
  running = redis.call('XPENDING', KEYS[1], 'workers')[1]
end
return {tonumber(m[1]) or 0, tonumber(m[2]) or 0, tonumber(m[3]) or 0, running}
"""


@attrs.define(frozen=True)
class QueueItem:
    """One item of a shared batch: its position ``index`` and the ``data`` enqueued."""

    batch_id: str
    entry_id: str
    index: int
    data: Any

    @property
    def idempotency_key(self) -> str:
        """The key to submit this item under, so a redelivered item is not billed twice."""
        return f"batch:{self.batch_id}:{self.index}"


@attrs.define(frozen=True)
class QueueStatus:
    """Counts of a shared batch: waiting, held by a worker, finished well or badly."""

    pending: int
    running: int
    done: int
    failed: int

    @property
    def finished(self) -> bool:
        """Every item is done or failed."""
        return self.pending == 0 and self.running == 0


class RedisBatchQueue:
    """Batches shared by many workers through Redis (see the module doc).

    ``client`` is a ``redis.asyncio.Redis``; ``consumer`` names this worker (host and a random
    suffix by default); an item not acked ``idle_timeout`` seconds after it was claimed is
    taken by the next claim of another worker: keep ``idle_timeout`` above the longest item,
    or :meth:`touch` the items in hand more often than that.

    >>> queue = RedisBatchQueue(client, namespace="prod")  # doctest: +SKIP
    >>> await queue.enqueue_once("nightly", [{"prompt": "a cat"}])  # doctest: +SKIP
    """

    def __init__(
        self,
        client: Any,
        *,
        namespace: str = "wavespeed",
        consumer: str | None = None,
        idle_timeout: float = 600.0,
    ) -> None:
        self._client = client
        self.namespace = namespace
        self.consumer = consumer or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self.idle_timeout = idle_timeout
        self._enqueue = client.register_script(ENQUEUE)
        self._claim = client.register_script(CLAIM)
        self._ack = client.register_script(ACK)
        self._touch = client.register_script(TOUCH)
        self._status = client.register_script(STATUS)
        self._cursors: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"RedisBatchQueue(namespace={self.namespace!r}, consumer={self.consumer!r})"

    def _keys(self, batch_id: str) -> list[str]:
        prefix = f"{{{self.namespace}}}:batch:{batch_id}"  # one Cluster hash slot
        return [f"{prefix}:stream", f"{prefix}:meta"]

    async def enqueue_once(self, batch_id: str, items: Iterable[Any]) -> bool:
        """Add ``items`` (JSON values) unless this batch was enqueued already; True if added."""
        encoded = [json.dumps(item) for item in items]
        return bool(await self._enqueue(keys=self._keys(batch_id), args=encoded))

    async def claim(self, batch_id: str, count: int = 1) -> list[QueueItem]:
        """Take up to ``count`` items: a dead worker's first, then new ones; [] when none."""
        args = [self.consumer, int(self.idle_timeout * 1000), count]
        args.append(self._cursors.get(batch_id, "0-0"))
        cursor, entries = await self._claim(keys=self._keys(batch_id)[:1], args=args)
        self._cursors[batch_id] = _text(cursor)
        return [_item(batch_id, entry) for entry in entries]

    async def ack(self, batch_id: str, item: QueueItem, *, failed: bool = False) -> None:
        """Mark ``item`` done (or failed); an item is counted once however often it is acked."""
        outcome = "failed" if failed else "done"
        await self._ack(keys=self._keys(batch_id), args=[item.entry_id, outcome])

    async def touch(self, batch_id: str, items: Iterable[QueueItem]) -> int:
        """Keep ``items`` in hand from being reclaimed; how many this worker still holds.

        A heartbeat: call it more often than ``idle_timeout`` while the items run.
        """
        args = [self.consumer, *(item.entry_id for item in items)]
        if len(args) == 1:
            return 0
        return int(await self._touch(keys=self._keys(batch_id)[:1], args=args))

    async def status(self, batch_id: str) -> QueueStatus:
        """How many items wait, run, are done and failed."""
        total, done, failed, running = await self._status(keys=self._keys(batch_id))
        return QueueStatus(
            pending=int(total) - int(done) - int(failed) - int(running),
            running=int(running),
            done=int(done),
            failed=int(failed),
        )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _item(batch_id: str, entry: list[Any]) -> QueueItem:
    entry_id, flat = entry
    fields: Mapping[str, str] = {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}
    return QueueItem(
        batch_id=batch_id,
        entry_id=_text(entry_id),
        index=int(fields["index"]),
        data=json.loads(fields["item"]),
    )
