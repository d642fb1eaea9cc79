"""The bodies of the client's account methods: balance, price, catalogue, delete, cancel.

``AsyncWaveSpeed`` keeps one :class:`AccountCalls` and its methods are thin doors onto it.
Requests are built and parsed by ``_account.py``; they are sent by the client's
``ApiSession`` (retried as reads: none of them creates a task).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import math
from collections.abc import Iterable, Mapping
from typing import Any

import anyio

from .._http.session import ApiSession
from .._telemetry import telemetry
from .._wire import schema as _schema
from .._wire.account import (
    BILLING_PAGE,
    BillingRecord,
    Catalogue,
    Usage,
    balance_request,
    billings_request,
    delete_request,
    models_request,
    parse_balance,
    parse_billings,
    parse_deleted,
    parse_models,
    parse_quote,
    parse_usage,
    price_request,
    usage_request,
)
from .._wire.convert import structure_prediction
from .._wire.models import ModelInfo, Quote
from .._wire.protocol import check_model_id, result_request
from ..errors import APIError, NotFound, PredictionTimeout

__all__ = ["SCHEMA_CHECK_BUDGET", "AccountCalls"]

log = logging.getLogger(__name__)

#: The longest a payload's schema check may take (in a worker thread) before the payload is
#: left to the server to judge. Schemas too costly to check are left to it at once, so this is
#: a backstop, not a wait: a checkable catalogue schema takes well under a millisecond.
SCHEMA_CHECK_BUDGET = 2.0

_MAX_PAGES = 100  # pages of one billing search: 10,000 records of 100 ids is not paging


class AccountCalls:
    """The account side of one client (see the module docstring)."""

    def __init__(
        self, api: ApiSession, catalogue: Catalogue, *, validate_inputs: bool = False
    ) -> None:
        if validate_inputs:
            _schema.require()  # say so now, not at the first submit
        self.api = api
        self.catalogue = catalogue
        self.validate_inputs = validate_inputs
        self._legacy_price = False  # set once /model/price proved missing
        self._loading = asyncio.Lock()

    @property
    def base_url(self) -> str:
        """The API's base URL."""
        return self.api.base_url

    async def balance(self) -> float:
        """``GET /api/v3/balance``, in USD."""
        with telemetry.span("wavespeed.account.balance"):
            return await self.api.call(balance_request(self.base_url), parse=parse_balance)

    async def price(self, model: str, payload: Mapping[str, Any] | Any) -> Quote:
        """Quote ``/model/price``; on 404 or 405 try ``/model/pricing`` (and keep using it)."""
        request = price_request(self.base_url, model, payload, legacy=self._legacy_price)
        parse = functools.partial(parse_quote, model=model)
        try:
            return await self.api.call(request, parse=parse)
        except APIError as exc:
            if self._legacy_price or exc.status not in (404, 405):
                raise
        legacy = price_request(self.base_url, model, payload, legacy=True)
        quote = await self.api.call(legacy, parse=parse)
        self._legacy_price = True
        return quote

    async def models(self, *, refresh: bool = False) -> list[ModelInfo]:
        """The catalogue, fetched at most once per ``ttl`` unless ``refresh``."""
        async with self._loading:  # concurrent first submits fetch it once
            if refresh or not self.catalogue.fresh:
                models = await self.api.call(models_request(self.base_url), parse=parse_models)
                self.catalogue.store(models)
            return self.catalogue.all()

    async def model(self, model_id: str) -> ModelInfo:
        """One catalogue entry; :class:`NotFound` naming the id when there is none."""
        check_model_id(model_id)
        await self.models()
        info = self.catalogue.get(model_id)
        if info is None:
            raise NotFound(
                f"model {model_id!r} is not in the catalogue ({len(self.catalogue.all())} models)",
                status=404,
            )
        return info

    async def check(self, model: str, body: Mapping[str, Any], *, timeout: float) -> None:
        """Check a submit's body against the model's schema, when a catalogue is at hand.

        With ``validate_inputs`` the catalogue is loaded (or refreshed) first, within
        ``timeout`` seconds (the submit's deadline: then :class:`PredictionTimeout`, nothing
        sent); without it, a catalogue loaded by ``models()`` is used if ``jsonschema-rs`` is
        installed. A model the catalogue does not list is left to the server to judge, and so
        is a payload whose check does not end within :data:`SCHEMA_CHECK_BUDGET`.
        """
        started = anyio.current_time()
        if self.validate_inputs and not self.catalogue.fresh:
            with anyio.move_on_after(None if math.isinf(timeout) else timeout) as scope:
                await self.models()
            if scope.cancelled_caught:
                raise PredictionTimeout(
                    None, timeout, reason="the model catalogue did not load; nothing was sent"
                )
        elif not (self.catalogue.loaded and _schema.available()):
            return
        info = self.catalogue.get(model)
        if info is None or not info.input_schema:
            return
        budget = min(SCHEMA_CHECK_BUDGET, timeout - (anyio.current_time() - started))
        with anyio.move_on_after(budget):
            await anyio.to_thread.run_sync(
                _schema.validate_payload, model, info.input_schema, body, abandon_on_cancel=True
            )
            return
        log.debug("the payload of %s is left to the server: its check ran out of time", model)

    async def delete(self, ids: Iterable[str]) -> int:
        """``POST /api/v3/predictions/delete``; returns ``deleted_count``."""
        return await self.api.call(delete_request(self.base_url, ids), parse=parse_deleted)

    async def cancel(self, prediction_id: str) -> bool:
        """Delete the task unless it has finished; whether it was deleted."""
        request = result_request(self.base_url, prediction_id)
        current = await self.api.call(
            request, parse=structure_prediction, prediction_id=prediction_id
        )
        if current.status.is_terminal:
            return False  # its outputs are the user's: cancelling must not delete them
        return await self.delete([prediction_id]) > 0

    async def billings(self, ids: Iterable[str]) -> list[BillingRecord]:
        """The billed price of each prediction: searches of 100 ids, every page of each."""
        wanted = list(dict.fromkeys(ids))
        chunks = [wanted[at : at + BILLING_PAGE] for at in range(0, len(wanted), BILLING_PAGE)]
        records: list[BillingRecord] = []
        with telemetry.span("wavespeed.account.billings", {"wavespeed.predictions": len(wanted)}):
            for chunk in chunks or [[]]:  # no id: the request's own check refuses it
                for page in range(1, _MAX_PAGES + 1):
                    request = billings_request(self.base_url, chunk, page)
                    found, more = await self.api.call(request, parse=parse_billings)
                    records.extend(found)
                    if not more:
                        break
        return records

    async def usage(self, start: dt.datetime, end: dt.datetime) -> Usage:
        """The account's usage from ``start`` to ``end``."""
        request = usage_request(self.base_url, start, end)
        with telemetry.span("wavespeed.account.usage"):
            parse = functools.partial(parse_usage, start=start, end=end)
            return await self.api.call(request, parse=parse)
