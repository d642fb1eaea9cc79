"""History queries (``POST /api/v3/predictions``): validating the body."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, TypeGuard

import attrs

from .._wire.convert import parse_datetime
from ..errors import InvalidInput

__all__ = ["HistoryQuery", "is_int", "parse_history_query"]


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


def is_int(value: object) -> TypeGuard[int]:
    """Whether ``value`` is a JSON integer (``True`` is not one)."""
    return isinstance(value, int) and not isinstance(value, bool)
