"""A pytest fixture: a running :class:`Emulator` on a frozen clock.

Use with anyio's pytest plugin (``@pytest.mark.anyio``); move time with ``advance()``::

    from wavespeed_async.emulator.pytest_plugin import wavespeed_emulator  # noqa: F401

    @pytest.mark.anyio
    async def test_video(wavespeed_emulator: Emulator) -> None:
        wavespeed_emulator.advance(30)
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ._server import Emulator

__all__ = ["wavespeed_emulator"]


@pytest.fixture
async def wavespeed_emulator() -> AsyncIterator[Emulator]:
    """A started emulator with ``speed=0``: nothing happens until the test calls ``advance``."""
    async with Emulator(speed=0) as emulator:
        yield emulator
