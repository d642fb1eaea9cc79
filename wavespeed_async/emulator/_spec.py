"""One catalogue entry (:class:`ModelSpec`) and the schema pieces entries are built from.

Prices: ``price`` is the model's *base price*, the floor of its price range, as the platform's
catalogue shows it (``base_price``). What one task costs is ``price`` times a factor of its
inputs (``scale``), and the entry's ``formula`` says the same in JSONata, the language of the
platform's own price formulas: ``{"total_price": base_price * duration / 5}``. Both read the
inputs with the schema's defaults filled in, so the quote (``/model/price``), the formula a
client reads in ``/models`` and the debit always agree (tests evaluate each formula with a
JSONata engine against the quote).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ._schema import SIZE_COMPONENT

__all__ = [
    "ASPECT_RATIOS",
    "FLAT",
    "ModelSpec",
    "aspect_ratio",
    "choice",
    "flag",
    "image",
    "integer",
    "loras",
    "number",
    "prompt",
    "seed",
    "size",
    "text",
]

ASPECT_RATIOS = ("16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "9:21")
_SEED_MAX = 2_147_483_647

#: The formula of a model whose every task costs its base price.
FLAT = '{"total_price": base_price}'


def _one(inputs: Mapping[str, Any]) -> float:
    return 1.0


@attrs.frozen
class ModelSpec:
    """One catalogue entry: input schema, output kind and count, run time and price.

    ``price`` is the base price in USD; a task costs ``price * scale(inputs)``, ``inputs``
    holding the schema's defaults for the fields a submit leaves out (see :meth:`price_for`).
    """

    model_id: str
    name: str
    description: str
    type: str  # the catalogue's category, e.g. "text-to-video"
    output: str  # "video" or "image"
    duration: float  # emulated seconds from start to outcome
    price: float
    properties: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    required: tuple[str, ...] = ()
    formula: str = FLAT
    scale: Callable[[Mapping[str, Any]], float] = _one

    @property
    def schema(self) -> dict[str, Any]:
        """The request schema, as ``/api/v3/models`` shows it."""
        return {
            "type": "object",
            "properties": {name: dict(field) for name, field in self.properties.items()},
            "required": list(self.required),
            "x-order-properties": list(self.properties),
        }

    def with_defaults(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """``inputs`` with the schema's default for every field they leave out (or null)."""
        filled = {
            name: field["default"] for name, field in self.properties.items() if "default" in field
        }
        filled.update({name: value for name, value in inputs.items() if value is not None})
        return filled

    def output_count(self, inputs: Mapping[str, Any]) -> int:
        """How many outputs a task with ``inputs`` returns (``num_images`` if the schema has it)."""
        field = self.properties.get("num_images")
        if field is None:
            return 1
        count = inputs.get("num_images", field.get("default", 1))
        return count if isinstance(count, int) and not isinstance(count, bool) else 1

    def price_for(self, inputs: Mapping[str, Any]) -> float:
        """What a task with ``inputs`` costs, in USD (the quote, the formula and the debit)."""
        return round(self.price * self.scale(self.with_defaults(inputs)), 6)

    def entry(self, server: str, sort_order: int) -> dict[str, Any]:
        """The model as one item of ``GET /api/v3/models``, submitting to ``server``."""
        api_schema = {
            "type": "model_run",
            "method": "POST",
            "server": server,
            "api_path": f"/api/v3/{self.model_id}",
            "request_schema": self.schema,
        }
        return {
            "model_id": self.model_id,
            "name": self.name,
            "description": self.description,
            "type": self.type,
            "base_price": self.price,
            "formula": self.formula,
            "sort_order": sort_order,
            "api_schema": {"api_schemas": [api_schema]},
        }


# --- schema pieces --------------------------------------------------------------------------


def prompt(max_length: int | None = None) -> dict[str, Any]:
    """A non-empty prompt, at most ``max_length`` characters."""
    field: dict[str, Any] = {
        "type": "string",
        "minLength": 1,
        "description": "The positive prompt for the generation.",
    }
    if max_length is not None:
        field["maxLength"] = max_length
    return field


def text(description: str, max_length: int | None = None) -> dict[str, Any]:
    """An optional free text (a negative prompt)."""
    field: dict[str, Any] = {"type": "string", "description": description}
    if max_length is not None:
        field["maxLength"] = max_length
    return field


def image(description: str = "The input image: a URL or a base64 image (data URI).") -> Any:
    """An image input: a URL or a data URI."""
    return {"type": "string", "description": description}


def seed() -> dict[str, Any]:
    """The usual seed, -1 for a random one."""
    return {
        "type": "integer",
        "default": -1,
        "minimum": -1,
        "maximum": _SEED_MAX,
        "description": "The random seed to use for the generation. -1 means a random seed.",
    }


def size(default: str, low: int, high: int) -> dict[str, Any]:
    """A ``"W*H"`` size, each side from ``low`` to ``high``."""
    return {
        "type": "string",
        "default": default,
        "minimum": low,
        "maximum": high,
        "x-ui-component": SIZE_COMPONENT,
        "description": "The size of the generated media in pixels (width*height).",
    }


def aspect_ratio(choices: tuple[str, ...] = ASPECT_RATIOS, default: str = "16:9") -> Any:
    """An aspect ratio among ``choices``."""
    return {
        "type": "string",
        "default": default,
        "enum": list(choices),
        "description": "The aspect ratio of the generated media.",
    }


def choice(kind: str, choices: tuple[Any, ...], default: Any, description: str) -> Any:
    """A field of type ``kind`` whose value is one of ``choices``."""
    return {"type": kind, "default": default, "enum": list(choices), "description": description}


def flag(description: str, default: bool = False) -> dict[str, Any]:
    """A boolean."""
    return {"type": "boolean", "default": default, "description": description}


def integer(default: int, low: int, high: int, description: str) -> dict[str, Any]:
    """An integer from ``low`` to ``high``."""
    return {
        "type": "integer",
        "default": default,
        "minimum": low,
        "maximum": high,
        "description": description,
    }


def number(default: float, low: float, high: float, description: str) -> dict[str, Any]:
    """A number from ``low`` to ``high``."""
    return {
        "type": "number",
        "default": default,
        "minimum": low,
        "maximum": high,
        "description": description,
    }


def loras(description: str, max_items: int = 3) -> dict[str, Any]:
    """A list of LoRAs, each ``{"path": URL or repo id, "scale": 0..4}``."""
    return {
        "type": "array",
        "maxItems": max_items,
        "default": [],
        "description": description,
        "items": {
            "type": "object",
            "properties": {
                "path": {"type": "string", "minLength": 1, "description": "The LoRA's URL."},
                "scale": number(1.0, 0.0, 4.0, "How strongly the LoRA applies."),
            },
            "required": ["path"],
        },
    }
