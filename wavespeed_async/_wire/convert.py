"""The one cattrs converter: every (de)serialization between the wire and the models."""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Mapping
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from ..errors import InvalidInput, ProtocolError
from .models import ImageEdit, Prediction, Status, TextToVideo

__all__ = [
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


def parse_datetime(text: str) -> dt.datetime | None:
    """Parse the API's ISO-8601 timestamps (``...Z``, any fraction length) on Python 3.10+.

    Returns ``None`` (and logs) for text it cannot read: a timestamp never fails a prediction.
    """
    match = _ISO.match(text.strip())
    if match is None:
        log.warning("unparseable created_at %r; keeping None", text)
        return None
    frac = (match["frac"] or "")[:6].ljust(6, "0")
    tz = match["tz"] or "+00:00"
    tz = "+00:00" if tz.upper() == "Z" else tz
    if len(tz) == 5:  # +0000
        tz = f"{tz[:3]}:{tz[3:]}"
    clock = match["time"] or "00:00:00"
    return dt.datetime.fromisoformat(f"{match['base']}T{clock}.{frac}{tz}")


def _structure_datetime(value: Any, _: type[Any]) -> dt.datetime | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, tz=dt.timezone.utc)
    return parse_datetime(str(value))


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
    """The JSON body for a payload: an attrs model or a mapping, ``None`` values dropped."""
    raw = converter.unstructure(payload) if attrs.has(type(payload)) else payload
    if not isinstance(raw, Mapping):
        raise InvalidInput("payload", payload, "a mapping or a payload model")
    return {str(key): value for key, value in raw.items() if value is not None}


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
    schemas = (present.get("api_schema") or {}).get("api_schemas") or []
    runs = [s for s in schemas if isinstance(s, Mapping) and s.get("type") == "model_run"]
    for schema in runs or schemas:  # the submit's schema, else the first one given
        if isinstance(schema, Mapping) and isinstance(schema.get("request_schema"), Mapping):
            present["input_schema"] = dict(schema["request_schema"])
            break
    return _structure_model_fields(present, ModelInfo)


converter.register_structure_hook(Quote, _structure_quote)
converter.register_structure_hook(ModelInfo, _structure_model)
