"""The bodies of the client's account methods: balance, price, catalogue, delete, cancel.

``AsyncWaveSpeed`` keeps one :class:`AccountCalls` and its methods are thin doors onto it.
Requests are built and parsed by ``_account.py``; they are sent by the client's
``ApiSession`` (retried as reads: none of them creates a task).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

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
from ..errors import APIError, NotFound

__all__ = ["AccountCalls"]

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
            return parse_balance(await self.api.call(balance_request(self.base_url)))

    async def price(self, model: str, payload: Mapping[str, Any] | Any) -> Quote:
        """Quote ``/model/price``; on 404 or 405 try ``/model/pricing`` (and keep using it)."""
        request = price_request(self.base_url, model, payload, legacy=self._legacy_price)
        try:
            data = await self.api.call(request)
        except APIError as exc:
            if self._legacy_price or exc.status not in (404, 405):
                raise
            data = await self.api.call(price_request(self.base_url, model, payload, legacy=True))
            self._legacy_price = True
        return parse_quote(data, model)

    async def models(self, *, refresh: bool = False) -> list[ModelInfo]:
        """The catalogue, fetched at most once per ``ttl`` unless ``refresh``."""
        async with self._loading:  # concurrent first submits fetch it once
            if refresh or not self.catalogue.fresh:
                answer = await self.api.call(models_request(self.base_url))
                self.catalogue.store(parse_models(answer))
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

    async def check(self, model: str, body: Mapping[str, Any]) -> None:
        """Check a submit's body against the model's schema, when a catalogue is at hand.

        With ``validate_inputs`` the catalogue is loaded (or refreshed) first; without it, a
        catalogue loaded by ``models()`` is used if ``jsonschema`` is installed. A model the
        catalogue does not list is left to the server to judge.
        """
        if self.validate_inputs and not self.catalogue.fresh:
            await self.models()
        elif not (self.catalogue.loaded and _schema.available()):
            return
        info = self.catalogue.get(model)
        if info is not None and info.input_schema:
            _schema.validate_payload(model, info.input_schema, body)

    async def delete(self, ids: Iterable[str]) -> int:
        """``POST /api/v3/predictions/delete``; returns ``deleted_count``."""
        return parse_deleted(await self.api.call(delete_request(self.base_url, ids)))

    async def cancel(self, prediction_id: str) -> bool:
        """Delete the task unless it has finished; whether it was deleted."""
        request = result_request(self.base_url, prediction_id)
        current = structure_prediction(await self.api.call(request, prediction_id=prediction_id))
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
                    found, more = parse_billings(
                        await self.api.call(billings_request(self.base_url, chunk, page))
                    )
                    records.extend(found)
                    if not more:
                        break
        return records

    async def usage(self, start: dt.datetime, end: dt.datetime) -> Usage:
        """The account's usage from ``start`` to ``end``."""
        request = usage_request(self.base_url, start, end)
        with telemetry.span("wavespeed.account.usage"):
            return parse_usage(await self.api.call(request), start, end)
