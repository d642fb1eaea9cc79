"""The model families integrations call most, with their real input shapes.

Veo 3, Kling (two ids), Seedance (two), Wan 2.2 image-to-video (and its LoRA variant), as
the platform's model pages list their inputs. Their prices grow with ``duration`` (and Veo 3's
with resolution and audio), the way the platform's video prices do; the numbers are this
emulator's. Each ``scale`` is its ``formula`` in Python (tests check they agree).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._spec import (
    ModelSpec,
    aspect_ratio,
    choice,
    flag,
    image,
    loras,
    number,
    prompt,
    seed,
    text,
)

__all__ = ["POPULAR"]

_NEGATIVE = text("What the video should not show.")
_SEEDANCE_LONGEST = 12  # what "-1, the model chooses" is billed as: the longest it may choose


def _seconds(inputs: Mapping[str, Any]) -> float:
    duration = inputs.get("duration")
    return float(duration) if isinstance(duration, (int, float)) else 0.0


def _per_five_seconds(inputs: Mapping[str, Any]) -> float:
    return _seconds(inputs) / 5


def _veo3(inputs: Mapping[str, Any]) -> float:
    audio = 2.0 if inputs.get("generate_audio") is True else 1.0
    resolution = 1.5 if inputs.get("resolution") == "1080p" else 1.0
    return _seconds(inputs) / 4 * audio * resolution


def _seedance_fast(inputs: Mapping[str, Any]) -> float:
    seconds = _seconds(inputs)
    return (_SEEDANCE_LONGEST if seconds == -1 else seconds) / 4


_PER_FIVE_SECONDS = '{"total_price": base_price * duration / 5}'


def _wan_22(lora: bool) -> ModelSpec:
    suffix = "-lora" if lora else ""
    properties: dict[str, Mapping[str, Any]] = {
        "image": image(),
        "prompt": prompt(),
        "negative_prompt": _NEGATIVE,
        "last_image": image("An image the video should end on (optional)."),
        "duration": choice("integer", (5, 8), 5, "The video's length in seconds."),
        "seed": seed(),
    }
    if lora:
        properties["loras"] = loras("LoRAs applied to both noise stages.")
        properties["high_noise_loras"] = loras("LoRAs applied to the high-noise stage.")
        properties["low_noise_loras"] = loras("LoRAs applied to the low-noise stage.")
    return ModelSpec(
        f"wavespeed-ai/wan-2.2/i2v-720p{suffix}",
        f"WAN 2.2 Image-to-Video 720p{' LoRA' if lora else ''}",
        "720p videos from an image" + (", with LoRAs per noise stage." if lora else "."),
        "image-to-video",
        output="video",
        duration=40.0,
        price=0.35 if lora else 0.3,
        properties=properties,
        required=("image", "prompt"),
        formula=_PER_FIVE_SECONDS,
        scale=_per_five_seconds,
    )


def _kling(model_id: str, name: str, prompt_limit: int | None, guidance: bool) -> ModelSpec:
    properties: dict[str, Mapping[str, Any]] = {
        "prompt": prompt(prompt_limit),
        "image": image("The first frame: a jpg or png, at most 10 MB, at least 300 px a side."),
        "negative_prompt": _NEGATIVE,
    }
    if guidance:
        properties["guidance_scale"] = number(0.5, 0.0, 1.0, "How closely to follow the prompt.")
    properties["duration"] = choice("integer", (5, 10), 5, "The video's length in seconds.")
    return ModelSpec(
        model_id,
        name,
        "Videos that start from an image, 5 or 10 seconds.",
        "image-to-video",
        output="video",
        duration=60.0,
        price=0.25,
        properties=properties,
        required=("prompt", "image"),
        formula=_PER_FIVE_SECONDS,
        scale=_per_five_seconds,
    )


POPULAR = (
    ModelSpec(
        "google/veo3",
        "Google Veo 3 Text To Video",
        "Videos with sound from a text prompt, 4 to 8 seconds, 720p or 1080p.",
        "text-to-video",
        output="video",
        duration=90.0,
        price=0.8,  # the floor: 4 s, 720p, silent
        properties={
            "prompt": prompt(),
            "aspect_ratio": aspect_ratio(("16:9", "9:16")),
            "duration": choice("integer", (8, 4, 6), 8, "The video's length in seconds."),
            "resolution": choice("string", ("720p", "1080p"), "720p", "The video's resolution."),
            "generate_audio": flag("Whether the video has sound.", default=True),
            "negative_prompt": _NEGATIVE,
            "seed": seed(),
        },
        required=("prompt",),
        formula=(
            '{"total_price": base_price * duration / 4 * (generate_audio ? 2 : 1)'
            ' * (resolution = "1080p" ? 1.5 : 1)}'
        ),
        scale=_veo3,
    ),
    _kling(
        "kwaivgi/kling-v2.6-std/image-to-video",
        "Kling V2.6 Standard Image To Video",
        prompt_limit=None,
        guidance=False,
    ),
    _kling(
        "kwaivgi/kling-v2.1-i2v-standard",
        "Kling V2.1 Image To Video Standard",
        prompt_limit=2500,
        guidance=True,
    ),
    ModelSpec(
        "bytedance/seedance-v1-lite-i2v-480p",
        "Bytedance Seedance V1 Lite Image To Video 480p",
        "480p videos from an image, 5 or 10 seconds.",
        "image-to-video",
        output="video",
        duration=30.0,
        price=0.1,
        properties={
            "prompt": {**prompt(2000), "minLength": 0},
            "image": image(),
            "duration": choice("integer", (5, 10), 5, "The video's length in seconds."),
            "seed": seed(),
        },
        required=("image",),
        formula=_PER_FIVE_SECONDS,
        scale=_per_five_seconds,
    ),
    ModelSpec(
        "bytedance/seedance-v1.5-pro/text-to-video-fast",
        "Bytedance Seedance V1.5 Pro Fast (text-to-video)",
        "Videos from a text prompt, 4 to 12 seconds, or as long as the model chooses (-1).",
        "text-to-video",
        output="video",
        duration=20.0,
        price=0.08,  # the floor: 4 s
        properties={
            "prompt": prompt(),
            "duration": choice(
                "integer",
                (-1, *range(4, 13)),
                5,
                "The video's length in seconds; -1 lets the model choose (billed as 12 s).",
            ),
            "aspect_ratio": aspect_ratio(
                ("adaptive", "16:9", "9:16", "4:3", "3:4", "1:1"), default="adaptive"
            ),
            "seed": seed(),
        },
        required=("prompt",),
        formula='{"total_price": base_price * (duration = -1 ? 12 : duration) / 4}',
        scale=_seedance_fast,
    ),
    _wan_22(lora=False),
    _wan_22(lora=True),
)
