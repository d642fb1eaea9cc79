"""A local WaveSpeed v3 API server (aiohttp) on an emulated clock.

It speaks the real protocol over real sockets: submit, poll, sync mode, history, delete,
uploads and output files, with scripted failures and a clock tests move by hand.

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
