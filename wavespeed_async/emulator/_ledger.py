"""The emulated account's ledger: what each task debited, and the two endpoints that read it.

Every accepted submit that costs something leaves one ``deduct`` record (a free task debits
nothing and leaves none; neither a failed nor a deleted task is refunded, so their records
stay). ``POST /api/v3/billings/search`` and ``POST /api/v3/user/usage_stats`` answer from
these records only, so what they report billed is exactly what the balance lost.

Query rules (where the platform's are unconfirmed, these are the emulator's): billing pages
hold 1 to 100 records (``page_size``), sorted ``"created_at ASC"`` or ``"created_at DESC"``
(the default); at most 100 ``prediction_uuids`` per search. A usage window needs both ISO-8601
ends, ``start_time <= created_at <= end_time``, days are UTC dates.
"""

from __future__ import annotations

import collections
import datetime as dt
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from ..errors import InvalidInput
from ._history import is_int, timestamp_field

__all__ = ["BILLING_TYPE", "Debit", "Ledger", "iso"]

_MAX_IDS = 100
_SORTS = ("created_at ASC", "created_at DESC")
#: The one kind of billing record the emulator writes: a task's debit.
BILLING_TYPE = "deduct"


def iso(moment: dt.datetime) -> str:
    """A timestamp as the API writes them: UTC, milliseconds, ``Z``."""
    text = moment.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


@attrs.frozen
class Debit:
    """One task's debit: the billing record's id, the prediction, its model, price and time."""

    uuid: str
    prediction_id: str
    model: str
    price: float
    created_at: dt.datetime


class Ledger:
    """Every debit of the account, in the order they were made."""

    def __init__(self) -> None:
        self.debits: list[Debit] = []

    def record(self, prediction_id: str, model: str, price: float, at: dt.datetime) -> None:
        """Write down that ``prediction_id`` debited ``price`` at wall time ``at``."""
        if price > 0:
            self.debits.append(Debit(uuid.uuid4().hex, prediction_id, model, price, at))

    def billed(self) -> float:
        """Everything debited so far, in USD."""
        return round(sum(debit.price for debit in self.debits), 6)

    # --- POST /api/v3/billings/search ---------------------------------------------------------

    def search(self, body: object, status_of: Callable[[str], str]) -> dict[str, Any]:
        """The ``data`` of a billing search; ``status_of(id)`` is a prediction's status now."""
        if not isinstance(body, dict):
            raise InvalidInput("body", type(body).__name__, "a JSON object")
        page, page_size = body.get("page", 1), body.get("page_size", 20)
        if not is_int(page) or page < 1:
            raise InvalidInput("page", page, "an integer >= 1")
        if not is_int(page_size) or not 1 <= page_size <= 100:
            raise InvalidInput("page_size", page_size, "an integer from 1 to 100")
        sort = body.get("sort") or "created_at DESC"
        if sort not in _SORTS:
            raise InvalidInput("sort", sort, "one of " + ", ".join(_SORTS))
        billing_type = body.get("billing_type") or BILLING_TYPE
        if not isinstance(billing_type, str):
            raise InvalidInput("billing_type", billing_type, "a string such as 'deduct'")
        wanted = _prediction_ids(body.get("prediction_uuids"))
        matched = [
            debit
            for debit in self.debits
            if billing_type == BILLING_TYPE and (wanted is None or debit.prediction_id in wanted)
        ]
        if sort.endswith("DESC"):
            matched.reverse()
        start = (page - 1) * page_size
        items = [_billing_item(debit, status_of) for debit in matched[start : start + page_size]]
        return {"items": items, "page": page, "page_size": page_size, "total": len(matched)}

    # --- POST /api/v3/user/usage_stats --------------------------------------------------------

    def usage(self, body: object, model_type: Callable[[str], str]) -> dict[str, Any]:
        """The ``data`` of a usage query; ``model_type(model)`` is a model's category."""
        if not isinstance(body, dict):
            raise InvalidInput("body", type(body).__name__, "a JSON object")
        start, end = _moment(body, "start_time"), _moment(body, "end_time")
        if end < start:
            raise InvalidInput("end_time", body["end_time"], "a time after start_time")
        inside = [debit for debit in self.debits if start <= debit.created_at <= end]
        days: dict[str, list[Debit]] = collections.defaultdict(list)
        for debit in inside:
            days[debit.created_at.astimezone(dt.timezone.utc).date().isoformat()].append(debit)
        daily = [
            {"date": date, **_count_and_amount(debits), "models": _per_model(debits)}
            for date, debits in sorted(days.items())
        ]
        models = sorted({debit.model for debit in inside})
        per_model = [{"model_uuid": model, "model_type": model_type(model)} for model in models]
        return {"daily_usage": daily, "per_model_usage": per_model}


def _prediction_ids(value: object) -> set[str] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) > _MAX_IDS
        or not all(isinstance(item, str) for item in value)
    ):
        raise InvalidInput("prediction_uuids", value, f"a list of at most {_MAX_IDS} ids")
    return set(value)


def _moment(body: dict[str, Any], name: str) -> dt.datetime:
    value = body.get(name)
    parsed = timestamp_field(body, name)  # refuses an impossible date (30 February) too
    if parsed is None:
        raise InvalidInput(name, value, "an ISO-8601 timestamp")
    return parsed


def _billing_item(debit: Debit, status_of: Callable[[str], str]) -> dict[str, Any]:
    return {
        "uuid": debit.uuid,
        "billing_type": BILLING_TYPE,
        "price": debit.price,
        "created_at": iso(debit.created_at),
        "order": {"uuid": debit.uuid, "amount": debit.price, "currency": "USD"},
        "prediction": {
            "uuid": debit.prediction_id,
            "model_uuid": debit.model,
            "status": status_of(debit.prediction_id),
        },
    }


def _count_and_amount(debits: Iterable[Debit]) -> dict[str, Any]:
    prices = [debit.price for debit in debits]
    return {"count": len(prices), "amount": round(sum(prices), 6)}


def _per_model(debits: list[Debit]) -> list[dict[str, Any]]:
    by_model: dict[str, list[Debit]] = collections.defaultdict(list)
    for debit in debits:
        by_model[debit.model].append(debit)
    return [
        {"model_uuid": model, **_count_and_amount(group)}
        for model, group in sorted(by_model.items())
    ]
