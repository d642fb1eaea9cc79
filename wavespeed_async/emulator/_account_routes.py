"""The account and catalogue routes: balance, price quotes, the model list, and the bill.

The bill (billing records and usage) is read from the account's ledger.
"""

from __future__ import annotations

from aiohttp import web

from ..errors import InvalidInput
from ._catalog import CATALOG, UNLISTED, ModelSpec, model_spec
from ._http import Refused, envelope, origin, read_json
from ._schema import validate
from ._state import EmulatorState

__all__ = ["AccountRoutes"]


class AccountRoutes:
    """Handlers over the account (balance, bill) and the catalogue (models, prices)."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    def add_to(self, router: web.UrlDispatcher) -> None:
        """Register the routes (before the catch-all model route)."""
        router.add_get("/api/v3/balance", self.balance)
        router.add_get("/api/v3/account/balance", self.account_balance)
        router.add_post("/api/v3/model/price", self.price)
        router.add_post("/api/v3/model/pricing", self.pricing)
        router.add_get("/api/v3/models", self.models)
        router.add_post("/api/v3/billings/search", self.billings)
        router.add_post("/api/v3/user/usage_stats", self.usage)

    async def balance(self, request: web.Request) -> web.Response:
        """``GET /api/v3/balance``: the account's balance in USD."""
        return envelope({"balance": self.state.account.balance})

    async def account_balance(self, request: web.Request) -> web.Response:
        """``GET /api/v3/account/balance``: the same, with its currency."""
        return envelope({"balance": self.state.account.balance, "currency": "USD"})

    async def price(self, request: web.Request) -> web.Response:
        """``POST /api/v3/model/price``: what a task with these inputs would cost."""
        spec, price = await self._quote(request)
        return envelope(
            {
                "model_id": spec.model_id,
                "price": price,
                "discounted_price": price,
                "discount_rate": 0.0,
                "currency": "USD",
            }
        )

    async def pricing(self, request: web.Request) -> web.Response:
        """``POST /api/v3/model/pricing``: the older quote, as ``unit_price``."""
        spec, price = await self._quote(request)
        return envelope({"model_id": spec.model_id, "unit_price": price, "currency": "USD"})

    async def _quote(self, request: web.Request) -> tuple[ModelSpec, float]:
        body = await read_json(request)
        if not isinstance(body, dict):
            raise InvalidInput("body", type(body).__name__, "a JSON object")
        model_id, inputs = body.get("model_id"), body.get("inputs", {})
        if not isinstance(model_id, str) or not model_id:
            raise InvalidInput("model_id", model_id, "a model id from /api/v3/models")
        if not isinstance(inputs, dict):
            raise InvalidInput("inputs", inputs, "a JSON object of the model's inputs")
        spec = model_spec(model_id)
        if spec is None:
            raise Refused(404, f"model not found: {model_id}")
        validate(spec.schema, inputs, complete=False)
        return spec, spec.price_for(inputs)

    async def models(self, request: web.Request) -> web.Response:
        """``GET /api/v3/models``: the whole catalogue, whatever the query."""
        here = origin(request)
        entries = [spec.entry(here, order) for order, spec in enumerate(CATALOG.values(), 1)]
        return envelope(entries)

    async def billings(self, request: web.Request) -> web.Response:
        """``POST /api/v3/billings/search``: the debit records of the predictions asked for."""
        body = await read_json(request)
        return envelope(self.state.account.ledger.search(body, self._status_of))

    async def usage(self, request: web.Request) -> web.Response:
        """``POST /api/v3/user/usage_stats``: amounts debited per day and model in a window."""
        body = await read_json(request)
        return envelope(self.state.account.ledger.usage(body, _model_type))

    def _status_of(self, prediction_id: str) -> str:
        task = self.state.tasks.get(prediction_id)
        return "deleted" if task is None else task.raw_status


def _model_type(model_id: str) -> str:
    return (model_spec(model_id) or UNLISTED).type
