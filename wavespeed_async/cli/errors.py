"""The one place the command line turns an exception into what a user reads on stderr.

A library error or a file's error is its message; anything else is a bug of ours, shown as
one line naming the command (the stack only with ``--debug`` or ``WAVESPEED_DEBUG=1``), so a
user never sees a traceback for a bug nobody has found yet. Exit status 1 either way.
"""

from __future__ import annotations

import os
import sys
import traceback

from .._wire.protocol import redact
from .._wire.settings import API_KEY_ENV
from ..errors import WaveSpeedError

__all__ = ["DEBUG_ENV", "debugging", "report"]

#: Set to 1 to print the stack of an unexpected error, as ``--debug`` does.
DEBUG_ENV = "WAVESPEED_DEBUG"
_SHOWN = 200
_BUG = "a bug of wavespeed-async: run again with --debug for the details"


def debugging(flag: bool) -> bool:
    """Whether to print stacks: ``--debug`` given, or :data:`DEBUG_ENV` set (not ``0``)."""
    return flag or os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")


def report(exc: Exception, command: str, *, debug: bool) -> int:
    """Print ``exc`` for a user on stderr and return the exit status, 1."""
    error = _first(exc)
    if isinstance(error, WaveSpeedError):
        print(f"error: {error}", file=sys.stderr)
    elif isinstance(error, OSError):  # a batch file, an image, an output directory
        where = f": {error.filename}" if error.filename else ""
        print(f"error: {error.strerror or error}{where}", file=sys.stderr)
    else:
        if debug:
            traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        what = redact(str(error), os.environ.get(API_KEY_ENV))
        what = what if len(what) <= _SHOWN else f"{what[:_SHOWN]}..."
        hint = "" if debug else f" ({_BUG})"
        name = type(error).__name__
        print(f"error: {command} failed unexpectedly: {name}: {what}{hint}", file=sys.stderr)
    return 1


def _first(exc: BaseException) -> BaseException:
    """The first error inside task groups' exception groups (a group says nothing itself).

    Duck-typed: on Python 3.10 the groups are the ``exceptiongroup`` backport's.
    """
    inner = getattr(exc, "exceptions", None)
    while isinstance(inner, tuple) and inner and isinstance(inner[0], BaseException):
        exc = inner[0]
        inner = getattr(exc, "exceptions", None)
    return exc
