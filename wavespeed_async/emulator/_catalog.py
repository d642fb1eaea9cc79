"""The emulator's model catalogue: what each model accepts, outputs, costs and takes.

The two seed models carry the schemas of their documentation pages; the others are models
the official clients use by default (the Python SDK's examples, the MCP server's
``flux-dev``, ``flux-kontext-pro`` and ``wan-2.1/i2v-480p-lora``, the CLI's ``z-image/turbo``)
with schemas of their own. Prices are this emulator's, not the platform's price list.

A model that is not listed is still accepted, as before the catalogue existed: any JSON
object, one image output (whatever its id says), 3 s, free (``UNLISTED_PRICE``), so tests and
benchmarks may invent model ids and run thousands of tasks; only ``/model/price``,
``/model/pricing`` (404) and ``/models`` say they do not know it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from ._schema import SIZE_COMPONENT

__all__ = [
    "ASPECT_RATIOS",
    "CATALOG",
    "UNLISTED",
    "UNLISTED_PRICE",
    "ModelSpec",
    "model_spec",
]

ASPECT_RATIOS = ("16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "9:21")
#: What a task of a model missing from the catalogue costs, in USD: nothing, as before.
UNLISTED_PRICE = 0.0
_SEED_MAX = 2_147_483_647


@attrs.frozen
class ModelSpec:
    """One catalogue entry: input schema, output kind and count, run time and price.

    ``price`` is per output (per image where the schema has ``num_images``), in USD.
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

    @property
    def schema(self) -> dict[str, Any]:
        """The request schema, as ``/api/v3/models`` shows it."""
        return {
            "type": "object",
            "properties": {name: dict(field) for name, field in self.properties.items()},
            "required": list(self.required),
            "x-order-properties": list(self.properties),
        }

    def output_count(self, inputs: Mapping[str, Any]) -> int:
        """How many outputs a task with ``inputs`` returns (``num_images`` if the schema has it)."""
        field = self.properties.get("num_images")
        if field is None:
            return 1
        count = inputs.get("num_images", field.get("default", 1))
        return count if isinstance(count, int) and not isinstance(count, bool) else 1

    def price_for(self, inputs: Mapping[str, Any]) -> float:
        """What a task with ``inputs`` costs, in USD."""
        return round(self.price * self.output_count(inputs), 6)

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
            "sort_order": sort_order,
            "api_schema": {"api_schemas": [api_schema]},
        }


# --- schema pieces --------------------------------------------------------------------------


def _prompt(max_length: int | None = None) -> dict[str, Any]:
    field: dict[str, Any] = {
        "type": "string",
        "minLength": 1,
        "description": "The positive prompt for the generation.",
    }
    if max_length is not None:
        field["maxLength"] = max_length
    return field


def _image(description: str = "The input image: a URL or a base64 image (data URI).") -> Any:
    return {"type": "string", "description": description}


def _seed() -> dict[str, Any]:
    return {
        "type": "integer",
        "default": -1,
        "minimum": -1,
        "maximum": _SEED_MAX,
        "description": "The random seed to use for the generation. -1 means a random seed.",
    }


def _size(default: str, low: int, high: int) -> dict[str, Any]:
    return {
        "type": "string",
        "default": default,
        "minimum": low,
        "maximum": high,
        "x-ui-component": SIZE_COMPONENT,
        "description": "The size of the generated media in pixels (width*height).",
    }


def _aspect_ratio() -> dict[str, Any]:
    return {
        "type": "string",
        "default": "16:9",
        "enum": list(ASPECT_RATIOS),
        "description": "The aspect ratio of the generated media.",
    }


def _flag(description: str) -> dict[str, Any]:
    return {"type": "boolean", "default": False, "description": description}


_BASE64 = _flag("If enabled, the output is a BASE64 string instead of a URL (API only).")
_SYNC = _flag("If set, the request waits for the outputs and returns them (API only).")


def _integer(default: int, low: int, high: int, description: str) -> dict[str, Any]:
    return {
        "type": "integer",
        "default": default,
        "minimum": low,
        "maximum": high,
        "description": description,
    }


def _number(default: float, low: float, high: float, description: str) -> dict[str, Any]:
    return {
        "type": "number",
        "default": default,
        "minimum": low,
        "maximum": high,
        "description": description,
    }


_NUM_IMAGES = _integer(1, 1, 4, "How many images to generate (each is billed).")
_STEPS = _integer(28, 1, 50, "The number of inference steps.")
_GUIDANCE = _number(3.5, 1.0, 20.0, "How closely the output follows the prompt.")


# --- the catalogue --------------------------------------------------------------------------

_MODELS = (
    ModelSpec(
        "bytedance/dreamina-v3.0-pro/text-to-video",
        "Bytedance Dreamina V3.0 Pro Text To Video",
        "1080p videos from a text prompt, in seven aspect ratios.",
        "text-to-video",
        output="video",
        duration=30.0,
        price=0.5,
        properties={"prompt": _prompt(), "aspect_ratio": _aspect_ratio(), "seed": _seed()},
        required=("prompt",),
    ),
    ModelSpec(
        "bytedance/dreamina-v3.0/edit",
        "Bytedance Dreamina V3.0 Edit",
        "Edits one image following a prompt (Chinese or English, at most 120 characters).",
        "image-to-image",
        output="image",
        duration=3.0,
        price=0.03,
        properties={
            "prompt": _prompt(120),
            "image": _image("The image to edit, can be a URL or base64 encoded image."),
            "size": _size("1328*1328", 512, 2048),
            "seed": _seed(),
            "enable_base64_output": _BASE64,
            "enable_sync_mode": _SYNC,
        },
        required=("prompt", "image"),
    ),
    ModelSpec(
        "bytedance/dreamina-v3.0-pro/image-to-video",
        "Bytedance Dreamina V3.0 Pro Image To Video",
        "1080p videos that start from an image.",
        "image-to-video",
        output="video",
        duration=30.0,
        price=0.5,
        properties={
            "prompt": _prompt(),
            "image": _image(),
            "aspect_ratio": _aspect_ratio(),
            "seed": _seed(),
        },
        required=("prompt", "image"),
    ),
    ModelSpec(
        "wavespeed-ai/flux-dev",
        "FLUX.1 [dev]",
        "Text-to-image, one to four images per request.",
        "text-to-image",
        output="image",
        duration=3.0,
        price=0.003,
        properties={
            "prompt": _prompt(),
            "size": _size("1024*1024", 256, 1536),
            "num_inference_steps": _STEPS,
            "guidance_scale": _GUIDANCE,
            "num_images": _NUM_IMAGES,
            "seed": _seed(),
            "enable_safety_checker": {**_flag("Filter unsafe outputs."), "default": True},
            "enable_base64_output": _BASE64,
            "enable_sync_mode": _SYNC,
        },
        required=("prompt",),
    ),
    ModelSpec(
        "wavespeed-ai/flux-kontext-pro",
        "FLUX.1 Kontext [pro]",
        "Image-to-image editing with a prompt.",
        "image-to-image",
        output="image",
        duration=3.0,
        price=0.04,
        properties={
            "prompt": _prompt(),
            "image": _image(),
            "guidance_scale": _GUIDANCE,
            "seed": _seed(),
            "enable_safety_checker": {**_flag("Filter unsafe outputs."), "default": True},
            "enable_sync_mode": _SYNC,
        },
        required=("prompt",),
    ),
    ModelSpec(
        "wavespeed-ai/wan-2.1/i2v-480p-lora",
        "WAN 2.1 Image-to-Video 480p LoRA",
        "480p videos from an image, with LoRAs.",
        "image-to-video",
        output="video",
        duration=30.0,
        price=0.2,
        properties={
            "prompt": _prompt(),
            "image": _image(),
            "size": {**_size("832*480", 480, 832), "enum": ["832*480", "480*832"]},
            "duration": _integer(5, 5, 10, "The video's length in seconds."),
            "seed": _seed(),
            "enable_sync_mode": _SYNC,
        },
        required=("prompt", "image"),
    ),
    ModelSpec(
        "wavespeed-ai/z-image/turbo",
        "Z-Image Turbo",
        "Fast text-to-image.",
        "text-to-image",
        output="image",
        duration=2.0,
        price=0.005,
        properties={
            "prompt": _prompt(),
            "size": _size("1024*1024", 256, 1536),
            "seed": _seed(),
            "enable_base64_output": _BASE64,
            "enable_sync_mode": _SYNC,
        },
        required=("prompt",),
    ),
)

#: Every listed model by id, in the order ``/api/v3/models`` shows them.
CATALOG: Mapping[str, ModelSpec] = {spec.model_id: spec for spec in _MODELS}

#: Stands in for a model the catalogue does not list (accepted, unvalidated, one image).
UNLISTED = ModelSpec("", "", "", "other", output="image", duration=3.0, price=UNLISTED_PRICE)


def model_spec(model_id: str) -> ModelSpec | None:
    """The catalogue entry of ``model_id``, or ``None`` when it is not listed."""
    return CATALOG.get(model_id)
