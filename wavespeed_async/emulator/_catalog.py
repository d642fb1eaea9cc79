"""The emulator's model catalogue: what each model accepts, outputs, costs and takes.

The two seed models carry the schemas of their documentation pages; then come the families
integrations call most (Veo 3, Kling, Seedance, Wan 2.2: ``_popular.py``), with their real
input shapes and prices that grow with duration and resolution; the others are models the
official clients use by default (the Python SDK's examples, the MCP server's ``flux-dev``,
``flux-kontext-pro`` and ``wan-2.1/i2v-480p-lora``, the CLI's ``z-image/turbo``) with schemas
of their own. Prices are this emulator's, not the platform's price list; how an entry's
price, formula and debit agree is told in ``_spec.py``.

A model that is not listed is still accepted, as before the catalogue existed: any JSON
object, one image output (whatever its id says), 3 s, free (``UNLISTED_PRICE``), so tests and
benchmarks may invent model ids and run thousands of tasks; only ``/model/price``,
``/model/pricing`` (404) and ``/models`` say they do not know it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._popular import POPULAR
from ._spec import (
    ASPECT_RATIOS,
    ModelSpec,
    aspect_ratio,
    flag,
    image,
    integer,
    number,
    prompt,
    seed,
    size,
)

__all__ = [
    "ASPECT_RATIOS",
    "CATALOG",
    "UNLISTED",
    "UNLISTED_PRICE",
    "ModelSpec",
    "model_spec",
]

#: What a task of a model missing from the catalogue costs, in USD: nothing, as before.
UNLISTED_PRICE = 0.0

_BASE64 = flag("If enabled, the output is a BASE64 string instead of a URL (API only).")
_SYNC = flag("If set, the request waits for the outputs and returns them (API only).")
_NUM_IMAGES = integer(1, 1, 4, "How many images to generate (each is billed).")
_STEPS = integer(28, 1, 50, "The number of inference steps.")
_GUIDANCE = number(3.5, 1.0, 20.0, "How closely the output follows the prompt.")
_SAFETY = flag("Filter unsafe outputs.", default=True)


def _per_image(inputs: Mapping[str, Any]) -> float:
    count = inputs.get("num_images", 1)
    return float(count) if isinstance(count, int) and not isinstance(count, bool) else 1.0


_SEEDS = (
    ModelSpec(
        "bytedance/dreamina-v3.0-pro/text-to-video",
        "Bytedance Dreamina V3.0 Pro Text To Video",
        "1080p videos from a text prompt, in seven aspect ratios.",
        "text-to-video",
        output="video",
        duration=30.0,
        price=0.5,
        properties={"prompt": prompt(), "aspect_ratio": aspect_ratio(), "seed": seed()},
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
            "prompt": prompt(120),
            "image": image("The image to edit, can be a URL or base64 encoded image."),
            "size": size("1328*1328", 512, 2048),
            "seed": seed(),
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
            "prompt": prompt(),
            "image": image(),
            "aspect_ratio": aspect_ratio(),
            "seed": seed(),
        },
        required=("prompt", "image"),
    ),
)

_OFFICIAL_DEFAULTS = (
    ModelSpec(
        "wavespeed-ai/flux-dev",
        "FLUX.1 [dev]",
        "Text-to-image, one to four images per request.",
        "text-to-image",
        output="image",
        duration=3.0,
        price=0.003,
        properties={
            "prompt": prompt(),
            "size": size("1024*1024", 256, 1536),
            "num_inference_steps": _STEPS,
            "guidance_scale": _GUIDANCE,
            "num_images": _NUM_IMAGES,
            "seed": seed(),
            "enable_safety_checker": _SAFETY,
            "enable_base64_output": _BASE64,
            "enable_sync_mode": _SYNC,
        },
        required=("prompt",),
        formula='{"total_price": base_price * num_images}',
        scale=_per_image,
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
            "prompt": prompt(),
            "image": image(),
            "guidance_scale": _GUIDANCE,
            "seed": seed(),
            "enable_safety_checker": _SAFETY,
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
            "prompt": prompt(),
            "image": image(),
            "size": {**size("832*480", 480, 832), "enum": ["832*480", "480*832"]},
            "duration": integer(5, 5, 10, "The video's length in seconds."),
            "seed": seed(),
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
            "prompt": prompt(),
            "size": size("1024*1024", 256, 1536),
            "seed": seed(),
            "enable_base64_output": _BASE64,
            "enable_sync_mode": _SYNC,
        },
        required=("prompt",),
    ),
)

#: Every listed model by id, in the order ``/api/v3/models`` shows them.
CATALOG: Mapping[str, ModelSpec] = {
    spec.model_id: spec for spec in (*_SEEDS, *POPULAR, *_OFFICIAL_DEFAULTS)
}

#: Stands in for a model the catalogue does not list (accepted, unvalidated, one image).
UNLISTED = ModelSpec("", "", "", "other", output="image", duration=3.0, price=UNLISTED_PRICE)


def model_spec(model_id: str) -> ModelSpec | None:
    """The catalogue entry of ``model_id``, or ``None`` when it is not listed."""
    return CATALOG.get(model_id)
