"""The account and catalogue endpoints, with no I/O: requests, parsers, the catalogue cache.

Like ``_protocol.py``: each ``*_request`` builds a :class:`Request` (checking its arguments
first) and each ``parse_*`` reads the ``data`` of the answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from ..errors import ConfigurationError, InvalidInput, ProtocolError
from .convert import structure_answer, unstructure_payload
from .models import ModelInfo, Quote
from .protocol import Request, check_model_id, check_prediction_id

__all__ = [
    "CATALOGUE_TTL",
    "Catalogue",
    "balance_request",
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
    """The balance in USD, from ``{"balance": <number>}``."""
    value = data.get("balance") if isinstance(data, Mapping) else None
    try:
        if isinstance(value, bool):
            raise TypeError
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ProtocolError(f"balance answer without a number: {data!r}"[:200]) from None


def price_request(
    base_url: str, model: str, payload: Mapping[str, Any] | Any, *, legacy: bool = False
) -> Request:
    """``POST /api/v3/model/price`` (``legacy``: the older ``/model/pricing``), same body."""
    body = {"model_id": check_model_id(model), "inputs": unstructure_payload(payload)}
    path = "model/pricing" if legacy else "model/price"
    return Request("POST", f"{base_url}/api/v3/{path}", body, model=model)


def parse_quote(data: Any, model: str) -> Quote:
    """A :class:`Quote` from either endpoint's ``data`` (``price`` or ``unit_price``)."""
    if isinstance(data, Mapping) and "model_id" not in data:
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
