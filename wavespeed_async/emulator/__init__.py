"""A local WaveSpeed v3 API server (aiohttp) on an emulated clock.

It speaks the real protocol over real sockets, with scripted failures and a clock tests
move by hand. Every API answer is the envelope ``{"code", "message", "data"}``:

- ``POST /api/v3/{model-id}`` submit (``?webhook=`` or a ``webhook_url`` body field; sync
  mode); 400 for input the catalogue's schema refuses, 429 + ``Retry-After`` over the rate,
  402 "Insufficient balance ..." when the balance cannot pay;
  ``GET /api/v3/predictions/{id}[/result]`` (with ``input``);
- ``POST /api/v3/predictions`` history; ``POST /api/v3/predictions/delete`` ``{"ids"}`` and
  ``DELETE /api/v3/predictions/{id}``: a deleted task is gone (its result answers 404);
- ``GET /api/v3/balance``, ``GET /api/v3/account/balance``, ``POST /api/v3/model/price`` and
  ``/model/pricing`` (``{"model_id", "inputs"}``), ``GET /api/v3/models`` (the catalogue);
- ``POST /api/v3/media/uploads`` (+ the pre-signed PUT), ``POST /api/v3/media/upload/binary``,
  ``GET /api/v3/webhook/secret``; output files under ``/outputs/``, uploads under
  ``/storage/``, for 7 emulated days (then 403 ``AccessDenied`` XML); anything else is 404.

A body that is not JSON, nests deeper than 64 levels, or holds a number outside 64 bits (or
NaN, or one that overflows) is a 400 on every route. The request log keeps the newest
10,000 requests; a deleted task keeps nothing.

>>> from wavespeed_async.emulator import Emulator
>>> async with Emulator(speed=0) as emu:                                # doctest: +SKIP
...     print(emu.base_url)
...     emu.advance(5.0)
"""

from ._clock import Clock
from ._faults import Fault, FaultPlan
from ._server import Emulator
from ._state import RequestRecord, TaskRecord, payload_key

__all__ = ["Clock", "Emulator", "Fault", "FaultPlan", "RequestRecord", "TaskRecord", "payload_key"]
