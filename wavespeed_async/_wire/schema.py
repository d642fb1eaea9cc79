"""Checking a payload against a model's input schema from the catalogue, with ``jsonschema``.

``jsonschema`` is the optional extra ``schema`` (``pip install jsonschema``).
Besides standard JSON Schema, the catalogue marks ``"W*H"`` size strings with
``"x-ui-component": "size"`` and bounds each side with ``minimum``/``maximum``: that is
checked too. Fields the schema does not name pass (official clients send extras).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any

from ..errors import ConfigurationError, InvalidInput

__all__ = ["available", "require", "validate_payload"]

_INSTALL = "pip install jsonschema (the schema extra)"
_SIZE_COMPONENT = "size"


def available() -> bool:
    """Whether ``jsonschema`` can be imported."""
    try:
        import jsonschema  # noqa: F401
    except ImportError:
        return False
    return True


def require() -> None:
    """Raise :class:`ConfigurationError` when ``jsonschema`` is not installed."""
    if not available():
        raise ConfigurationError(
            f"checking inputs against the model catalogue needs jsonschema: {_INSTALL}"
        )


def validate_payload(model: str, schema: Mapping[str, Any], payload: Mapping[str, Any]) -> None:
    """Raise :class:`InvalidInput` naming the first field of ``payload`` that ``schema`` refuses.

    ``allowed`` says what the field accepts, in words (``one of 16:9, 4:3, ...``).
    """
    require()
    from jsonschema.exceptions import best_match

    error = best_match(_validator_class()(dict(schema)).iter_errors(dict(payload)))
    if error is None:
        return
    properties = schema.get("properties") or {}
    if error.validator == "required":
        missing = [name for name in error.validator_value if name not in error.instance]
        field = missing[0] if missing else str(error.validator_value)
        shown = properties.get(field) or {}
        raise InvalidInput(field, None, f"given (it is required by {model}): {describe(shown)}")
    field = ".".join(str(part) for part in error.absolute_path) or "payload"
    subschema = error.schema if isinstance(error.schema, Mapping) else {}
    raise InvalidInput(field, error.instance, describe(subschema) or error.message)


def describe(field: Mapping[str, Any]) -> str:
    """What a schema field accepts, in words."""
    if "enum" in field:
        return "one of " + ", ".join(str(choice) for choice in field["enum"])
    kind = field.get("type", "value")
    kind = " or ".join(kind) if isinstance(kind, list) else str(kind)
    low, high = field.get("minimum"), field.get("maximum")
    if field.get("x-ui-component") == _SIZE_COMPONENT:
        return f"'W*H' with each side from {low if low is not None else 1} to {high or 'any'}"
    if low is not None or high is not None:
        return f"{_article(kind)} from {_bound(low, '-inf')} to {_bound(high, 'inf')}"
    shortest, longest = field.get("minLength"), field.get("maxLength")
    if longest is not None:
        return f"{_article(kind)} of at most {longest} characters"
    if shortest:
        return f"a non-empty {kind}"
    return _article(kind)


def _article(kind: str) -> str:
    return f"an {kind}" if kind[:1] in "aeiou" else f"a {kind}"


def _bound(value: object, default: str) -> str:
    return default if value is None else str(value)


@functools.lru_cache(maxsize=1)
def _validator_class() -> Any:
    from jsonschema import Draft202012Validator, validators

    return validators.extend(  # type: ignore[no-untyped-call]
        Draft202012Validator, {"x-ui-component": _check_component}
    )


def _check_component(validator: Any, component: Any, instance: Any, schema: Any) -> Iterator[Any]:
    from jsonschema.exceptions import ValidationError

    if component != _SIZE_COMPONENT or not isinstance(instance, str):
        return
    parts = instance.lower().replace("x", "*").split("*")
    low, high = schema.get("minimum"), schema.get("maximum")
    if len(parts) != 2 or not all(part.strip().isdigit() for part in parts):
        yield ValidationError(f"{instance!r} is not a 'W*H' size")
        return
    for side in map(int, parts):
        if (low is not None and side < low) or (high is not None and side > high):
            yield ValidationError(f"{instance!r} has a side outside {low}..{high}")
            return
