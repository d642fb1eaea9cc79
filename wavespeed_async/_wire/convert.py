"""The one cattrs converter: every (de)serialization between the wire and the models."""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
from collections.abc import Mapping
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from ..errors import InvalidInput, ProtocolError
from .models import ImageEdit, Prediction, Status, TextToVideo

__all__ = [
    "MAX_PAYLOAD_DEPTH",
    "nested_too_deep",
    "check_json",
    "converter",
    "parse_datetime",
    "structure_answer",
    "structure_payload",
    "structure_prediction",
    "unstructure_payload",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

converter = cattrs.Converter()

_PAYLOADS: tuple[type[Any], ...] = (TextToVideo, ImageEdit)

# --- timestamps -----------------------------------------------------------------------------

_ISO = re.compile(
    r"^(?P<base>\d{4}-\d{2}-\d{2})(?:[T ](?P<time>\d{2}:\d{2}(?::\d{2})?)(?:\.(?P<frac>\d+))?)?"
    r"(?P<tz>Z|[+-]\d{2}:?\d{2})?$",
    re.IGNORECASE,
)


def parse_datetime(text: str, *, quiet: bool = False) -> dt.datetime | None:
    """Parse the API's ISO-8601 timestamps (``...Z``, any fraction length) on Python 3.10+.

    Returns ``None`` (and logs, unless ``quiet``: a caller that reports it itself) for text
    it cannot read, an impossible date (30 February, month 13) included: a timestamp never
    fails a prediction.
    """
    match = _ISO.match(text.strip()) if len(text) <= 100 else None
    if match is None:
        return None if quiet else _unreadable(text)
    frac = (match["frac"] or "")[:6].ljust(6, "0")
    tz = match["tz"] or "+00:00"
    tz = "+00:00" if tz.upper() == "Z" else tz
    if len(tz) == 5:  # +0000
        tz = f"{tz[:3]}:{tz[3:]}"
    clock = match["time"] or "00:00:00"
    try:
        return dt.datetime.fromisoformat(f"{match['base']}T{clock}.{frac}{tz}")
    except ValueError:  # month 13, 30 February, 25 o'clock, an offset past a day
        return None if quiet else _unreadable(text)


#: Unreadable timestamp text that is shown in the log: short, and with no run of letters and
#: digits as long as a token (a server may echo anything, the API key too, into a field).
_SHOWABLE = re.compile(r"^(?!.*[A-Za-z0-9]{12})[^\s]{0,40}$")


def _unreadable(value: object) -> dt.datetime | None:
    shown = repr(value) if isinstance(value, str) and _SHOWABLE.match(value) else None
    log.warning("unparseable created_at %s; keeping None", shown or f"(a {type(value).__name__})")
    return None


def _structure_datetime(value: Any, _: type[Any]) -> dt.datetime | None:
    """The one place server timestamps are read: ISO text or epoch seconds; else ``None``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return dt.datetime.fromtimestamp(value, tz=dt.timezone.utc)
        except (OverflowError, OSError, ValueError):  # 1e20, NaN, infinity, before year 1
            return _unreadable(value)
    if not isinstance(value, str):
        return _unreadable(value)
    return parse_datetime(value)


converter.register_structure_hook(dt.datetime, _structure_datetime)


def _unstructure_datetime(value: dt.datetime) -> str:
    # The API's own form: UTC, milliseconds, "Z". A naive time is taken as UTC, not local.
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


converter.register_unstructure_hook(dt.datetime, _unstructure_datetime)
converter.register_structure_hook(Status, lambda value, _: Status.parse(str(value)))

# --- predictions ----------------------------------------------------------------------------

_structure_prediction_fields = make_dict_structure_fn(
    Prediction, converter, created_at=override(struct_hook=_structure_datetime)
)


def _structure_prediction(data: Mapping[str, Any], _: type[Prediction]) -> Prediction:
    # null means "not given": let the model's defaults apply, as for missing fields.
    present = {key: value for key, value in data.items() if value is not None}
    present["raw_status"] = str(present.get("status", ""))
    return _structure_prediction_fields(present, Prediction)


converter.register_structure_hook(Prediction, _structure_prediction)

_unstructure_prediction_fields = make_dict_unstructure_fn(
    Prediction, converter, raw_status=override(omit=True)
)


def _unstructure_prediction(prediction: Prediction) -> dict[str, Any]:
    data: dict[str, Any] = _unstructure_prediction_fields(prediction)
    data["status"] = prediction.raw_status or prediction.status.value
    return {key: value for key, value in data.items() if value is not None}


converter.register_unstructure_hook(Prediction, _unstructure_prediction)


def structure_prediction(data: object) -> Prediction:
    """Build a :class:`Prediction` from the ``data`` object of a response or webhook body."""
    return structure_answer(data, Prediction, "prediction")


def structure_answer(data: object, cls: type[T], what: str) -> T:
    """Build ``cls`` from an object the server sent; anything malformed is a ProtocolError."""
    if not isinstance(data, Mapping):
        raise ProtocolError(f"expected a {what} object, got {type(data).__name__}")
    try:
        return converter.structure(data, cls)
    except Exception as exc:
        details = (
            "; ".join(cattrs.transform_error(exc))
            if isinstance(exc, cattrs.BaseValidationError)
            else str(exc)
        )
        raise ProtocolError(f"malformed {what}: {details}") from exc


# --- payloads -------------------------------------------------------------------------------

converter.register_unstructure_hook(
    ImageEdit,
    make_dict_unstructure_fn(
        ImageEdit, converter, size=override(unstruct_hook=lambda size: f"{size[0]}*{size[1]}")
    ),
)


def _structure_payload(data: Mapping[str, Any], cls: type[T]) -> T:
    # Values reach the validators as sent, so a string seed is refused rather than coerced.
    fields = attrs.fields(cls)  # type: ignore[arg-type]
    for field in fields:
        if field.default is attrs.NOTHING and field.name not in data:
            raise InvalidInput(field.name, None, "given (it is required)")
    return cls(**{field.name: data[field.name] for field in fields if field.name in data})


converter.register_structure_hook_func(lambda cls: cls in _PAYLOADS, _structure_payload)


def structure_payload(data: object, cls: type[T]) -> T:
    """Validate a JSON body as the input of a known model; raises :class:`InvalidInput`."""
    if not isinstance(data, Mapping):
        raise InvalidInput("body", type(data).__name__, "a JSON object")
    return converter.structure(data, cls)


def unstructure_payload(payload: object) -> dict[str, Any]:
    """The JSON body for a payload: an attrs model or a mapping, ``None`` values dropped.

    The body is checked to be JSON that can be sent (see :func:`check_json`): a value that
    could not be encoded is :class:`InvalidInput` here, before any request.
    """
    raw = converter.unstructure(payload) if attrs.has(type(payload)) else payload
    if not isinstance(raw, Mapping):
        # a container is named by its type: its repr could be huge, or too deep to make
        shown = payload if isinstance(payload, (*_SCALARS, int, float)) else type(payload).__name__
        raise InvalidInput("payload", shown, "a mapping or a payload model")
    body = {str(key): value for key, value in raw.items() if value is not None}
    check_json(body)
    return body


#: How deeply a payload may nest; model inputs are a few levels deep, and Python's JSON
#: encoder gives up (RecursionError) somewhere near a thousand.
MAX_PAYLOAD_DEPTH = 100
#: The largest integer a payload may carry, in bits (Python refuses to print an integer of
#: more than 4,300 digits, about 14,284 bits).
_MAX_INT_BITS = 14_000
_SCALARS = (str, bool, type(None))
_KEYS = (str, int, float, bool, type(None))


def nested_too_deep(value: object) -> bool:
    """Whether decoded JSON nests objects or lists :data:`MAX_PAYLOAD_DEPTH` deep or more.

    Walked iteratively. ``json.loads`` gives up on deep nesting at a depth that depends on
    the Python version (3.13 reads 5,000 levels), so callers check this after decoding.
    """
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        )
        if children is None:
            continue
        if depth >= MAX_PAYLOAD_DEPTH:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def check_json(body: Mapping[str, Any]) -> None:
    """Raise :class:`InvalidInput` naming the first value of ``body`` that is not sendable JSON.

    Sendable: objects (``dict``, keys str, numbers, bools or ``None``), lists and tuples at
    most :data:`MAX_PAYLOAD_DEPTH` deep, strings, finite numbers, integers JSON can print,
    booleans and ``None``. Walked iteratively, so no payload makes it recurse.
    """
    stack: list[tuple[str, object, int]] = [(str(key), value, 1) for key, value in body.items()]
    while stack:
        path, value, depth = stack.pop()
        if isinstance(value, _SCALARS):
            continue
        if isinstance(value, int):
            if value.bit_length() > _MAX_INT_BITS:
                raise InvalidInput(path, "<a huge integer>", "an integer of at most 4,000 digits")
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise InvalidInput(path, value, "a finite number (JSON has no NaN or infinity)")
        elif depth >= MAX_PAYLOAD_DEPTH and isinstance(value, (dict, list, tuple)):
            raise InvalidInput(
                path, "<nested too deep>", f"JSON nested at most {MAX_PAYLOAD_DEPTH} levels"
            )
        elif isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, _KEYS):
                    raise InvalidInput(path, type(key).__name__, "an object with string keys")
                stack.append((f"{path}.{str(key)[:40]}"[:200], item, depth + 1))
        elif isinstance(value, (list, tuple)):
            stack.extend(
                (f"{path}[{index}]"[:200], item, depth + 1) for index, item in enumerate(value)
            )
        else:
            raise InvalidInput(path, type(value).__name__, "a JSON value (str, number, bool, ...)")


# --- account and catalogue ------------------------------------------------------------------
# (imported here, at the end: the models know nothing of the converter)
from .models import ModelInfo, Quote  # noqa: E402

_structure_quote_fields = make_dict_structure_fn(Quote, converter)
_structure_model_fields = make_dict_structure_fn(ModelInfo, converter)


def _structure_quote(data: Mapping[str, Any], _: type[Quote]) -> Quote:
    present = {key: value for key, value in data.items() if value is not None}
    if "price" not in present and "unit_price" in present:  # the older /model/pricing
        present["price"] = present["unit_price"]
    return _structure_quote_fields(present, Quote)


def _structure_model(data: Mapping[str, Any], _: type[ModelInfo]) -> ModelInfo:
    present = {key: value for key, value in data.items() if value is not None}
    api_schema = present.get("api_schema")
    schemas = api_schema.get("api_schemas") if isinstance(api_schema, Mapping) else None
    schemas = schemas if isinstance(schemas, list) else []
    runs = [s for s in schemas if isinstance(s, Mapping) and s.get("type") == "model_run"]
    for schema in runs or schemas:  # the submit's schema, else the first one given
        if isinstance(schema, Mapping) and isinstance(schema.get("request_schema"), Mapping):
            present["input_schema"] = dict(schema["request_schema"])
            break
    return _structure_model_fields(present, ModelInfo)


converter.register_structure_hook(Quote, _structure_quote)
converter.register_structure_hook(ModelInfo, _structure_model)
