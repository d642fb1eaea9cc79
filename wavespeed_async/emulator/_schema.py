"""Checking a submit body against a model's request schema.

The JSON Schema subset the platform's catalogue uses: types, enums, bounds, lengths,
required fields, ``W*H`` sizes, and lists of objects (LoRAs: ``items``, ``maxItems``).

A failed check raises :class:`InvalidInput` naming the field, which the app answers with 400.
Fields the schema does not name are accepted as they are: official clients send extras
(the MCP server adds ``loras`` and ``max_images`` to every image request).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import InvalidInput

__all__ = ["SIZE_COMPONENT", "parse_size", "validate"]

#: The ``x-ui-component`` of a ``"W*H"`` string field; its ``minimum``/``maximum`` bound
#: each side.
SIZE_COMPONENT = "size"

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


def parse_size(value: object) -> tuple[int, int] | None:
    """``"W*H"`` (or ``"WxH"``) as ``(width, height)``, or ``None`` when it is not one."""
    if not isinstance(value, str):
        return None
    parts = value.lower().replace("x", "*").split("*")
    if len(parts) != 2 or not all(part.strip().isdecimal() and len(part) < 10 for part in parts):
        return None
    return int(parts[0]), int(parts[1])


def validate(schema: Mapping[str, Any], body: Mapping[str, Any], *, complete: bool = True) -> None:
    """Raise :class:`InvalidInput` for the first field of ``body`` the schema refuses.

    ``complete=False`` checks only the fields given (a price quote needs no prompt).
    """
    properties: Mapping[str, Mapping[str, Any]] = schema.get("properties", {})
    for name in schema.get("required", ()) if complete else ():
        if body.get(name) in (None, ""):
            raise InvalidInput(name, body.get(name), _describe(properties.get(name, {})))
    for name, value in body.items():
        field = properties.get(name)
        if field is not None and value is not None:
            _check(name, value, field)


def _check(name: str, value: object, field: Mapping[str, Any]) -> None:
    kind = field.get("type", "string")
    wanted = _TYPES.get(kind, (object,))
    if not isinstance(value, wanted) or (kind != "boolean" and isinstance(value, bool)):
        raise InvalidInput(name, value, _describe(field))
    if "enum" in field and value not in field["enum"]:
        raise InvalidInput(name, value, _describe(field))
    if isinstance(value, str):
        _check_text(name, value, field)
    elif isinstance(value, list):
        _check_items(name, value, field)
    elif isinstance(value, (int, float)) and not _within(value, field):
        raise InvalidInput(name, value, _describe(field))


def _check_text(name: str, value: str, field: Mapping[str, Any]) -> None:
    if len(value) < field.get("minLength", 0) or len(value) > field.get("maxLength", len(value)):
        raise InvalidInput(name, value, _describe(field))
    if field.get("x-ui-component") == SIZE_COMPONENT:
        size = parse_size(value)
        if size is None or not all(_within(side, field) for side in size):
            raise InvalidInput(name, value, _describe(field))


def _check_items(name: str, value: list[Any], field: Mapping[str, Any]) -> None:
    if len(value) > field.get("maxItems", len(value)):
        raise InvalidInput(name, value, f"a list of at most {field['maxItems']} items")
    items = field.get("items")
    if items is None:
        return
    for index, item in enumerate(value):
        where = f"{name}[{index}]"
        if items.get("type") == "object" and isinstance(item, dict):
            for key in items.get("required", ()):
                if item.get(key) in (None, ""):
                    raise InvalidInput(f"{where}.{key}", item.get(key), "a value (required)")
            for key, member in item.items():
                if key in items.get("properties", {}) and member is not None:
                    _check(f"{where}.{key}", member, items["properties"][key])
        else:
            _check(where, item, items)


def _within(value: float, field: Mapping[str, Any]) -> bool:
    low, high = field.get("minimum"), field.get("maximum")
    return (low is None or value >= low) and (high is None or value <= high)


def _describe(field: Mapping[str, Any]) -> str:
    """What a field accepts, in words, for the 400's message."""
    if "enum" in field:
        return "one of " + ", ".join(str(choice) for choice in field["enum"])
    kind = field.get("type", "string")
    if field.get("x-ui-component") == SIZE_COMPONENT:
        low, high = field.get("minimum", 1), field.get("maximum", "any")
        return f"'W*H' with each side from {low} to {high}"
    if "minimum" in field or "maximum" in field:
        low, high = field.get("minimum", "-inf"), field.get("maximum", "inf")
        return f"a {kind} from {low} to {high}"
    if "maxLength" in field:
        return f"a non-empty {kind} of at most {field['maxLength']} characters"
    return f"a non-empty {kind}" if kind == "string" else f"a {kind}"
