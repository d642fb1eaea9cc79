"""The one place the emulator checks its own arguments (constructor, setters, scripting).

Each check raises :class:`~wavespeed_async.errors.InvalidInput` (a ``ValueError``) naming the
argument and the allowed range, so ``Emulator(port=70000)``, ``Emulator(speed=nan)`` and
``set_duration(model, -30)`` fail the same way, before anything starts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ..errors import InvalidInput

__all__ = [
    "check_count",
    "check_durations",
    "check_number",
    "check_port",
    "check_seconds",
    "shown",
]

_MAX_PORT = 65535
_SHOWN_BITS = 64


def shown(value: object) -> object:
    """``value``, or a description of it when it is an integer too long to print.

    (``repr`` of an integer past 4,300 digits raises.)
    """
    if isinstance(value, int) and value.bit_length() > _SHOWN_BITS:
        return f"<a {value.bit_length()}-bit integer>"
    return value


def check_number(
    name: str, value: object, *, minimum: float = 0.0, maximum: float = math.inf
) -> float:
    """``value`` as a float if it is a finite number from ``minimum`` to ``maximum``."""
    upper = "" if maximum == math.inf else f" and <= {maximum:g}"
    allowed = f"a finite number >= {minimum:g}{upper}"
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise InvalidInput(name, shown(value), allowed)
    try:
        number = float(value)
    except OverflowError:  # an int past float range
        raise InvalidInput(name, shown(value), allowed) from None
    if not math.isfinite(number) or not minimum <= number <= maximum:
        raise InvalidInput(name, shown(value), allowed)
    return number


def check_seconds(name: str, value: object, *, positive: bool = False) -> float:
    """A finite number of (emulated) seconds, >= 0, or > 0 when ``positive``."""
    seconds = check_number(name, value)
    if positive and seconds == 0:
        raise InvalidInput(name, shown(value), "a finite number of seconds > 0")
    return seconds


def check_count(name: str, value: object, *, minimum: int = 0) -> int:
    """An integer (not a bool) >= ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InvalidInput(name, shown(value), f"an integer >= {minimum}")
    return value


def check_port(value: object) -> int:
    """A TCP port: 0 (any free port) to 65535."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_PORT:
        raise InvalidInput(
            "port", shown(value), f"an integer from 0 (any free port) to {_MAX_PORT}"
        )
    return value


def check_durations(durations: Mapping[str, object] | None) -> dict[str, float]:
    """Per-model run times: each a finite number of seconds >= 0."""
    return {
        model: check_seconds(f"durations[{model!r}]", seconds)
        for model, seconds in (durations or {}).items()
    }
