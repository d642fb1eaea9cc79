"""The account and catalogue endpoints, with no I/O: requests, parsers, the catalogue cache.

Like ``_protocol.py``: each ``*_request`` builds a :class:`Request` (checking its arguments
first) and each ``parse_*`` reads the ``data`` of the answer.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import attrs

from ..errors import ConfigurationError, InvalidInput, ProtocolError
from .convert import parse_datetime, structure_answer, unstructure_payload
from .models import ModelInfo, Quote
from .protocol import Request, check_model_id, check_prediction_id

__all__ = [
    "BILLING_PAGE",
    "CATALOGUE_TTL",
    "BillingRecord",
    "ModelUsage",
    "Usage",
    "UsageDay",
    "billings_request",
    "parse_billings",
    "parse_usage",
    "usage_request",
    "Catalogue",
    "balance_request",
    "check_amount",
    "delete_request",
    "models_request",
    "parse_balance",
    "parse_deleted",
    "parse_models",
    "parse_quote",
    "price_request",
]

T = TypeVar("T")
log = logging.getLogger(__name__)

#: How long the catalogue is trusted, in seconds (the official CLI caches it for an hour).
CATALOGUE_TTL = 3600.0


def balance_request(base_url: str) -> Request:
    """``GET /api/v3/balance``."""
    return Request("GET", f"{base_url}/api/v3/balance")


def parse_balance(data: Any) -> float:
    """The balance in USD, from ``{"balance": <number>}`` (a finite number >= 0)."""
    value = data.get("balance") if isinstance(data, Mapping) else data
    return check_amount(value, "balance", "the balance")


_DECIMAL = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,12})?")


def check_amount(value: Any, field: str, what: str) -> float:
    """``value`` as USD if it is a finite JSON number >= 0; else :class:`ProtocolError`.

    The one place where a server's number becomes money. A plain decimal string ("0.25",
    at most 12 digits each side) is read as its number; NaN, infinities, negatives, other
    strings, booleans, ``null`` and integers too large for a float are refused, never guessed
    at (a NaN quote would make every comparison with a cost cap false, and so switch the cap
    off).
    The error names ``what`` and shows the value, capped (and a long string not at all).
    """
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        value = float(value)  # "0.25": a plain decimal, as some answers carry money
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            amount = float(value)
        except OverflowError:
            amount = math.inf
        if math.isfinite(amount) and amount >= 0:
            return amount
    raise ProtocolError(
        f"{what} is not an amount of USD (a finite number, 0 or more): {field}={_shown(value)}"
    )


def _shown(value: Any) -> str:
    """A server's value as JSON, capped; a long string (an echo of anything) only by length."""
    if isinstance(value, str) and len(value) > 16:
        return f"<a string of {len(value)} characters>"
    if value is None or isinstance(value, (str, int, float)):
        try:
            text = json.dumps(value)
        except ValueError:  # an integer past Python's digit limit for text
            text = "<an integer too large to show>"
    else:
        text = f"<a JSON {type(value).__name__}>"
    return text if len(text) <= 24 else f"{text[:16]}...<{len(text)} characters>"


def price_request(
    base_url: str, model: str, payload: Mapping[str, Any] | Any, *, legacy: bool = False
) -> Request:
    """``POST /api/v3/model/price`` (``legacy``: the older ``/model/pricing``), same body."""
    body = {"model_id": check_model_id(model), "inputs": unstructure_payload(payload)}
    path = "model/pricing" if legacy else "model/price"
    return Request("POST", f"{base_url}/api/v3/{path}", body, model=model)


def parse_quote(data: Any, model: str) -> Quote:
    """A :class:`Quote` from either endpoint's ``data`` (``price`` or ``unit_price``).

    Every amount in it must be a finite number >= 0 (:func:`check_amount`), else
    :class:`ProtocolError` naming ``model`` and the value.
    """
    if isinstance(data, Mapping):
        what = f"the price quote for {model}"
        if "price" not in data and "unit_price" not in data:
            raise ProtocolError(f"{what} has no price (neither price nor unit_price)")
        for field in ("price", "unit_price", "discounted_price"):
            if field in data:
                check_amount(data[field], field, what)
        if "model_id" not in data:
            data = {**data, "model_id": model}
    return structure_answer(data, Quote, "price quote")


def models_request(base_url: str) -> Request:
    """``GET /api/v3/models``: the whole catalogue, with each model's input schema."""
    return Request("GET", f"{base_url}/api/v3/models")


def parse_models(data: Any) -> list[ModelInfo]:
    """The catalogue's entries; one without a ``model_id``, or malformed, is skipped (logged)."""
    if isinstance(data, Mapping):  # tolerate a page-shaped answer, {"items": [...]}
        data = data.get("items", data.get("models"))
    if not isinstance(data, list):
        raise ProtocolError("catalogue answer is not a list of models")
    models = []
    for entry in data:
        if not (isinstance(entry, Mapping) and isinstance(entry.get("model_id"), str)):
            continue
        try:
            models.append(structure_answer(entry, ModelInfo, "catalogue entry"))
        except ProtocolError:  # one odd entry must not hide the rest of the catalogue
            log.warning(
                "a malformed catalogue entry was skipped (%d characters of id)",
                len(entry["model_id"]),
            )
    return models


def delete_request(base_url: str, ids: Iterable[str]) -> Request:
    """``POST /api/v3/predictions/delete`` with ``{"ids": [...]}`` (at least one id)."""
    checked = list(dict.fromkeys(check_prediction_id(task_id) for task_id in ids))
    if not checked:
        raise InvalidInput("ids", checked, "at least one prediction id")
    return Request("POST", f"{base_url}/api/v3/predictions/delete", {"ids": checked})


def parse_deleted(data: Any) -> int:
    """``deleted_count``: how many of the ids existed and are now gone."""
    count = data.get("deleted_count") if isinstance(data, Mapping) else None
    if not isinstance(count, int) or isinstance(count, bool):
        raise ProtocolError(f"delete answer without deleted_count: {data!r}"[:200])
    return count


class Catalogue:
    """The catalogue as last fetched, trusted for ``ttl`` seconds of ``clock``.

    ``clock`` is any monotonic seconds counter (``time.monotonic`` by default; tests pass
    their own).
    """

    def __init__(
        self, *, ttl: float = CATALOGUE_TTL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl >= 0:
            raise ConfigurationError(
                f"catalogue_ttl must be a number of seconds, 0 or more, got {ttl!r:.40}"
            )
        if not callable(clock):
            raise ConfigurationError("catalogue_clock must be a callable returning seconds")
        self.ttl = ttl
        self.clock = clock
        self._models: dict[str, ModelInfo] | None = None
        self._fetched_at = 0.0

    @property
    def loaded(self) -> bool:
        """Whether a catalogue was ever fetched (a stale one still serves validation)."""
        return self._models is not None

    @property
    def fresh(self) -> bool:
        """Whether the catalogue was fetched less than ``ttl`` seconds ago."""
        return self._models is not None and self.clock() - self._fetched_at < self.ttl

    def store(self, models: list[ModelInfo]) -> list[ModelInfo]:
        """Keep a freshly fetched catalogue; returns it."""
        self._models = {model.model_id: model for model in models}
        self._fetched_at = self.clock()
        return models

    def all(self) -> list[ModelInfo]:
        """Every model, in the catalogue's order."""
        return list((self._models or {}).values())

    def get(self, model_id: str) -> ModelInfo | None:
        """The entry of ``model_id``, or ``None``."""
        return (self._models or {}).get(model_id)


# --- the bill -------------------------------------------------------------------------------

#: Prediction ids per billing search (the page size the platform's integrators use).
BILLING_PAGE = 100


@attrs.frozen
class BillingRecord:
    """What one prediction was billed: ``price`` in USD, when (``created_at``), for ``model``."""

    prediction_id: str
    price: float
    created_at: dt.datetime | None = None
    model: str = ""


@attrs.frozen
class ModelUsage:
    """One model's predictions and amount (USD) in a usage window, or in one day of it."""

    model: str
    count: int
    amount: float


@attrs.frozen
class UsageDay:
    """One day (UTC) of usage: its predictions, amount (USD) and models."""

    date: dt.date
    count: int
    amount: float
    models: tuple[ModelUsage, ...] = ()


@attrs.frozen
class Usage:
    """The account's usage from ``start`` to ``end``: ``total`` USD, per day and per model.

    >>> usage.total, usage.per_model["google/veo3"].amount              # doctest: +SKIP
    (12.8, 9.6)
    """

    start: dt.datetime
    end: dt.datetime
    days: tuple[UsageDay, ...]

    @property
    def total(self) -> float:
        """Everything billed in the window, in USD."""
        return math.fsum(day.amount for day in self.days)

    @property
    def count(self) -> int:
        """How many predictions were billed in the window."""
        return sum(day.count for day in self.days)

    @property
    def per_model(self) -> dict[str, ModelUsage]:
        """Each model's predictions and amount over the whole window."""
        counts: dict[str, int] = {}
        amounts: dict[str, list[float]] = {}
        for day in self.days:
            for entry in day.models:
                counts[entry.model] = counts.get(entry.model, 0) + entry.count
                amounts.setdefault(entry.model, []).append(entry.amount)
        return {
            model: ModelUsage(model, counts[model], math.fsum(amounts[model])) for model in counts
        }


def billings_request(base_url: str, ids: Iterable[str], page: int = 1) -> Request:
    """``POST /api/v3/billings/search``: the debits of up to :data:`BILLING_PAGE` predictions."""
    checked = list(dict.fromkeys(check_prediction_id(task_id) for task_id in ids))
    if not 1 <= len(checked) <= BILLING_PAGE:
        raise InvalidInput("prediction_ids", len(checked), f"1 to {BILLING_PAGE} prediction ids")
    body = {
        "billing_type": "deduct",
        "prediction_uuids": checked,
        "sort": "created_at ASC",
        "page": page,
        "page_size": BILLING_PAGE,
    }
    return Request("POST", f"{base_url}/api/v3/billings/search", body)


def parse_billings(data: Any) -> tuple[list[BillingRecord], bool]:
    """The records of one page, and whether another page may follow.

    Reads ``data.items[i]`` and, as one integrator does, ``data[i]``; the prediction's id from
    ``prediction.uuid`` (or ``prediction_uuid``/``prediction_id``); ``price`` as money.
    """
    items = data.get("items") if isinstance(data, Mapping) else data
    if items is None:
        items = []
    if not isinstance(items, list):
        raise ProtocolError("billing answer without a list of records")
    records = [_billing_record(item) for item in items if isinstance(item, Mapping)]
    total = data.get("total") if isinstance(data, Mapping) else None
    more = len(items) >= BILLING_PAGE and (not isinstance(total, int) or total > len(items))
    return [record for record in records if record is not None], more


def _billing_record(item: Mapping[str, Any]) -> BillingRecord | None:
    prediction = item.get("prediction")
    prediction = prediction if isinstance(prediction, Mapping) else {}
    task_id = prediction.get("uuid") or item.get("prediction_uuid") or item.get("prediction_id")
    if not isinstance(task_id, str) or not task_id:
        return None  # a debit of something else than a prediction
    created = item.get("created_at")
    model = prediction.get("model_uuid") or prediction.get("model") or ""
    return BillingRecord(
        prediction_id=task_id,
        price=check_amount(item.get("price"), "price", f"the billed price of {task_id}"),
        created_at=parse_datetime(created) if isinstance(created, str) else None,
        model=model if isinstance(model, str) else "",
    )


def usage_request(base_url: str, start: dt.datetime, end: dt.datetime) -> Request:
    """``POST /api/v3/user/usage_stats`` for ``start`` to ``end`` (timezone-aware, in order)."""
    for name, moment in (("start", start), ("end", end)):
        if not isinstance(moment, dt.datetime) or moment.tzinfo is None:
            raise InvalidInput(name, moment, "a timezone-aware datetime")
    if end <= start:
        raise InvalidInput("end", end.isoformat(), f"a time after start ({start.isoformat()})")
    body = {"start_time": _iso(start), "end_time": _iso(end)}
    return Request("POST", f"{base_url}/api/v3/user/usage_stats", body)


def parse_usage(data: Any, start: dt.datetime, end: dt.datetime) -> Usage:
    """A :class:`Usage` from ``{"daily_usage": [{"date", "count", "amount", "models"}]}``."""
    daily = data.get("daily_usage") if isinstance(data, Mapping) else None
    if daily is None:
        daily = []
    if not isinstance(daily, list):
        raise ProtocolError("usage answer without a daily_usage list")
    days = [_usage_day(day) for day in daily if isinstance(day, Mapping)]
    return Usage(start, end, tuple(sorted(days, key=lambda day: day.date)))


def _usage_day(day: Mapping[str, Any]) -> UsageDay:
    when = parse_datetime(str(day.get("date", "")))
    if when is None:
        raise ProtocolError(f"usage day without a date: {day.get('date')!r}"[:200])
    listed = day.get("models")
    models = listed if isinstance(listed, list) else []
    return UsageDay(
        date=when.date(),
        count=_count(day.get("count")),
        amount=check_amount(day.get("amount"), "amount", f"the usage of {when.date()}"),
        models=tuple(
            ModelUsage(
                str(entry.get("model_uuid") or entry.get("model") or ""),
                _count(entry.get("count")),
                check_amount(
                    entry.get("amount"), "amount", f"the usage of {entry.get('model_uuid')}"
                ),
            )
            for entry in models
            if isinstance(entry, Mapping)
        ),
    )


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")
