"""Values of the account side: a price quote and a catalogue entry. No wire format here."""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["ModelInfo", "Quote"]


@attrs.define(frozen=True)
class Quote:
    """What one task of ``model_id`` with given inputs would cost.

    ``price`` is the list price and ``discounted_price`` what the account pays (the same when
    the platform gives no discount); :attr:`cost` is the latter. Amounts are in ``currency``
    (USD).

    >>> Quote("wavespeed-ai/flux-dev", price=0.03).cost
    0.03
    """

    model_id: str
    price: float
    discounted_price: float = attrs.field(
        default=attrs.Factory(lambda self: self.price, takes_self=True)
    )
    currency: str = "USD"
    discount_rate: float | None = None

    @property
    def cost(self) -> float:
        """What the account is charged for the task: the discounted price."""
        return self.discounted_price


@attrs.define(frozen=True)
class ModelInfo:
    """One model of the catalogue (``GET /api/v3/models``).

    ``input_schema`` is the model's request body as a JSON Schema (``properties``,
    ``required``, ``x-order-properties``); empty when the catalogue gives none.
    ``base_price`` is the catalogue's starting price in USD, when it shows one.
    """

    model_id: str
    name: str = ""
    description: str = ""
    type: str = ""
    base_price: float | None = None
    input_schema: dict[str, Any] = attrs.field(factory=dict)

    @property
    def fields(self) -> list[str]:
        """The input fields, in the catalogue's order (``x-order-properties``), then the rest."""
        properties = self.input_schema.get("properties") or {}
        order = [name for name in self.input_schema.get("x-order-properties") or ()]
        return [name for name in order if name in properties] + [
            name for name in properties if name not in order
        ]

    @property
    def required(self) -> list[str]:
        """The input fields a submit must give."""
        return [str(name) for name in self.input_schema.get("required") or ()]
