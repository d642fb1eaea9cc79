"""Payloads (validated at construction) and results. Nothing here knows the wire format."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from ..errors import InvalidInput

__all__ = [
    "ModelInfo",
    "Quote",
    "ASPECT_RATIOS",
    "ImageEdit",
    "Prediction",
    "Status",
    "TextToVideo",
    "Timings",
]

ASPECT_RATIOS = ("16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "9:21")
SEED_MIN, SEED_MAX = -1, 2_147_483_647
SIZE_MIN, SIZE_MAX = 512, 2048
EDIT_PROMPT_MAX = 120


class Status(str, enum.Enum):
    """A prediction's lifecycle: ``created -> processing -> completed | failed | ...``.

    A status string the library does not know parses as ``UNKNOWN`` (non-terminal); the raw
    text stays in :attr:`Prediction.raw_status`.
    """

    CREATED = "created"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    DELETED = "deleted"
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, text: str) -> Status:
        """Map an API status string to a member; anything unrecognised is ``UNKNOWN``."""
        try:
            return cls(text.strip().lower())
        except ValueError:
            return cls.UNKNOWN

    @property
    def is_terminal(self) -> bool:
        """Whether the task will not change any more."""
        return self in _TERMINAL

    @property
    def is_failure(self) -> bool:
        """Whether the task ended without outputs."""
        return self in _TERMINAL and self is not Status.COMPLETED


_TERMINAL = frozenset(
    {Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.TIMEOUT, Status.DELETED}
)


@attrs.define(frozen=True)
class Timings:
    """Server-side timings; ``inference`` is in milliseconds."""

    inference: int | None = None


@attrs.define(frozen=True)
class Prediction:
    """A task's state as the API last reported it.

    ``outputs`` are URLs, or bare base64 strings when ``enable_base64_output`` was set.
    ``has_nsfw_contents`` has one flag per output. ``code`` is the server's inner code, when
    it sends one (5004 means a sync-mode wait ran out while the task kept running). ``input``
    is the task's input where the API includes it (webhooks, history).
    """

    id: str
    model: str = ""
    status: Status = Status.UNKNOWN
    raw_status: str = ""
    outputs: tuple[str, ...] = ()
    urls: dict[str, str] = attrs.field(factory=dict)
    has_nsfw_contents: tuple[bool, ...] = ()
    created_at: dt.datetime | None = None
    error: str = ""
    timings: Timings | None = None
    code: int | None = None
    input: dict[str, Any] = attrs.field(factory=dict)

    @property
    def output(self) -> str | None:
        """The first output, or ``None`` when there is none."""
        return self.outputs[0] if self.outputs else None


# --- payloads -------------------------------------------------------------------------------


def _check_prompt(instance: object, attribute: attrs.Attribute[str], value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(attribute.name, value, "a non-empty string")


def _check_edit_prompt(instance: object, attribute: attrs.Attribute[str], value: Any) -> None:
    _check_prompt(instance, attribute, value)
    if len(value) > EDIT_PROMPT_MAX:
        raise InvalidInput(
            attribute.name, value, f"at most {EDIT_PROMPT_MAX} characters (got {len(value)})"
        )


def _check_seed(instance: object, attribute: attrs.Attribute[int], value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not SEED_MIN <= value <= SEED_MAX:
        raise InvalidInput(
            attribute.name, value, f"an integer from {SEED_MIN} to {SEED_MAX} (-1 = random)"
        )


def _check_aspect_ratio(instance: object, attribute: attrs.Attribute[str], value: object) -> None:
    if value not in ASPECT_RATIOS:
        raise InvalidInput(attribute.name, value, f"one of {', '.join(ASPECT_RATIOS)}")


def _check_bool(instance: object, attribute: attrs.Attribute[bool], value: object) -> None:
    if not isinstance(value, bool):
        raise InvalidInput(attribute.name, value, "True or False")


def _check_image(instance: object, attribute: attrs.Attribute[str], value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(
            attribute.name, value, "an image URL, a data: URI or a base64-encoded image"
        )


_SIZE_ALLOWED = f"(width, height) or 'W*H', each from {SIZE_MIN} to {SIZE_MAX}"


def _to_size(value: object) -> tuple[int, int]:
    """Accept ``(w, h)``, ``[w, h]``, ``"W*H"`` or ``"WxH"``; validation is the validator's."""
    if isinstance(value, str):
        parts = value.lower().replace("x", "*").split("*")
        try:
            width, height = (int(part) for part in parts)
        except ValueError:
            raise InvalidInput("size", value, _SIZE_ALLOWED) from None
        return (width, height)
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return (value[0], value[1])
    raise InvalidInput("size", value, _SIZE_ALLOWED)


def _check_size(
    instance: object, attribute: attrs.Attribute[tuple[int, int]], value: tuple[int, int]
) -> None:
    for side in value:
        if not isinstance(side, int) or isinstance(side, bool) or not SIZE_MIN <= side <= SIZE_MAX:
            raise InvalidInput("size", value, _SIZE_ALLOWED)


@attrs.define(frozen=True)
class TextToVideo:
    """Input of Dreamina V3.0 Pro text-to-video (1080p MP4 output).

    >>> TextToVideo("a red fox running through snow", aspect_ratio="9:16", seed=7)
    TextToVideo(prompt='a red fox running through snow', aspect_ratio='9:16', seed=7)
    """

    model_id: ClassVar[str] = "bytedance/dreamina-v3.0-pro/text-to-video"

    prompt: str = attrs.field(validator=_check_prompt)
    aspect_ratio: str = attrs.field(default="16:9", validator=_check_aspect_ratio)
    seed: int = attrs.field(default=-1, validator=_check_seed)


@attrs.define(frozen=True)
class ImageEdit:
    """Input of Dreamina V3.0 image edit: one image, a prompt of at most 120 characters.

    ``image`` is a URL or a base64 image (data URI). ``size`` is ``(width, height)``.
    """

    model_id: ClassVar[str] = "bytedance/dreamina-v3.0/edit"

    prompt: str = attrs.field(validator=_check_edit_prompt)
    image: str = attrs.field(validator=_check_image)
    size: tuple[int, int] = attrs.field(
        default=(1328, 1328), converter=_to_size, validator=_check_size
    )
    seed: int = attrs.field(default=-1, validator=_check_seed)
    enable_base64_output: bool = attrs.field(default=False, validator=_check_bool)
    enable_sync_mode: bool = attrs.field(default=False, validator=_check_bool)


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
        """The input fields, in the catalogue's order (``x-order-properties``), then the rest.

        Whatever the catalogue sends: names that are not strings are left out.
        """
        properties = self.input_schema.get("properties")
        if not isinstance(properties, Mapping):
            return []
        names = [name for name in properties if isinstance(name, str)]
        order = self.input_schema.get("x-order-properties")
        ordered = [name for name in order if name in names] if isinstance(order, list) else []
        return list(dict.fromkeys(ordered + names))

    @property
    def required(self) -> list[str]:
        """The input fields a submit must give (an odd ``required`` counts as none)."""
        names = self.input_schema.get("required")
        return [name for name in names if isinstance(name, str)] if isinstance(names, list) else []
