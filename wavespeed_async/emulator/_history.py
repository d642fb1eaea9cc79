"""History queries (``POST /api/v3/predictions``): validating the body."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, TypeGuard

import attrs

from .._wire.convert import parse_datetime
from ..errors import InvalidInput

__all__ = ["HistoryQuery", "is_int", "parse_history_query", "timestamp_field"]


@attrs.frozen
class HistoryQuery:
    """A validated ``POST /api/v3/predictions`` body."""

    page: int
    page_size: int
    model: str | None = None
    status: str | None = None
    created_after: dt.datetime | None = None
    created_before: dt.datetime | None = None


def parse_history_query(body: object) -> HistoryQuery:
    """Validate a history body; raises :class:`InvalidInput`."""
    if not isinstance(body, dict):
        raise InvalidInput("body", type(body).__name__, "a JSON object")
    page, page_size = body.get("page"), body.get("page_size")
    if not is_int(page) or page < 1:
        raise InvalidInput("page", page, "an integer >= 1")
    if not is_int(page_size) or not 1 <= page_size <= 100:
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
        timestamp_field(body, "created_after"),
        timestamp_field(body, "created_before"),
    )


def timestamp_field(body: Mapping[str, Any], name: str) -> dt.datetime | None:
    """The ISO-8601 time in field ``name`` of a request body, ``None`` when absent or empty.

    The one reading of a request's timestamps: one that is not a real instant (30 February,
    month 13, year 0, not a string) raises :class:`InvalidInput` naming the field.
    """
    value = body.get(name)
    if value is None or value == "":
        return None
    try:
        parsed = parse_datetime(value) if isinstance(value, str) else None
    except (ValueError, OverflowError):  # 30 February, month 13, year 0, hour 25
        parsed = None
    if parsed is None:
        raise InvalidInput(name, value, "an ISO-8601 timestamp")
    return parsed


def is_int(value: object) -> TypeGuard[int]:
    """Whether ``value`` is a JSON integer (``True`` is not one)."""
    return isinstance(value, int) and not isinstance(value, bool)
