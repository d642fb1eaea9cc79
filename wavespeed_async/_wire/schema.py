"""Checking a payload against a model's input schema from the catalogue, with ``jsonschema-rs``.

``jsonschema-rs`` is the optional extra ``schema`` (``pip install jsonschema-rs``).
Besides standard JSON Schema, the catalogue marks ``"W*H"`` size strings with
``"x-ui-component": "size"`` and bounds each side with ``minimum``/``maximum``: that is
checked too. Fields the schema does not name pass (official clients send extras).

The schema comes from a server, so it is treated as hostile:

* nothing in it makes the client fetch a URL (``offline``: a remote ``$ref`` is refused);
* patterns run on a linear-time regex engine (Rust's ``regex``: ``^(a+)+$`` is a few
  microseconds, where Python's ``re`` takes 2.2 s at 24 characters and doubles with each one,
  holding the GIL throughout); a pattern it cannot run (look-arounds) leaves the schema to
  the server;
* a schema whose ``$ref``/``allOf`` tree expands past :data:`MAX_EXPANDED_SUBSCHEMAS`
  (a doubling chain 24 deep is 1.6 s in ``jsonschema-rs``, unbounded in ``jsonschema``),
  that recurses, or is deeper than :data:`MAX_SCHEMA_DEPTH`, is left to the server;
* a schema that does not compile (a ``minimum`` that is a string, a bad regex, a dangling
  ``$ref``, ...) is left to the server.

"Left to the server" means the payload is sent unchecked, with a debug log line: the server
judges it as it would without ``validate_inputs``. Figures: ``benchmarks/schema_validators.py``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigurationError, InvalidInput

__all__ = [
    "MAX_EXPANDED_SUBSCHEMAS",
    "MAX_SCHEMA_DEPTH",
    "available",
    "describe",
    "require",
    "validate_payload",
]

log = logging.getLogger(__name__)

_INSTALL = "pip install jsonschema-rs (the schema extra)"
_SIZE_COMPONENT = "size"
#: A schema expanding (``$ref`` followed) to more subschemas than this is left to the server.
MAX_EXPANDED_SUBSCHEMAS = 10_000
#: A schema nested deeper than this is left to the server.
MAX_SCHEMA_DEPTH = 64
#: How many choices of an ``enum`` a message lists; how long the words of a message get.
_SHOWN_CHOICES = 12
_MAX_ALLOWED = 300
#: Compiled validators kept, by schema (the catalogue's ``input_schema`` dicts live long).
_CACHE_SIZE = 256
#: Keywords whose values are data, not subschemas.
_DATA_KEYWORDS = frozenset({"enum", "const", "default", "examples", "example"})


def available() -> bool:
    """Whether ``jsonschema-rs`` can be imported."""
    try:
        import jsonschema_rs  # noqa: F401
    except ImportError:
        return False
    return True


def require() -> None:
    """Raise :class:`ConfigurationError` when ``jsonschema-rs`` is not installed."""
    if not available():
        raise ConfigurationError(
            f"checking inputs against the model catalogue needs jsonschema-rs: {_INSTALL}"
        )


def validate_payload(model: str, schema: Mapping[str, Any], payload: Mapping[str, Any]) -> None:
    """Raise :class:`InvalidInput` naming the first field of ``payload`` that ``schema`` refuses.

    ``allowed`` says what the field accepts, in words (``one of 16:9, 4:3, ...``). A schema
    that cannot be checked in bounded time, or at all, is left to the server (returns).
    Blocking (Rust, holding the GIL): callers in an event loop run it in a worker thread.
    """
    require()
    validator = _validator(model, schema)
    if validator is None:
        return
    try:
        error = next(iter(validator.iter_errors(dict(payload))), None)
    except Exception as exc:  # a payload value the validator cannot convert
        log.debug("payload for %s not checked locally: %s", model, type(exc).__name__)
        return
    if error is not None:
        raise _refusal(model, schema, error)


def describe(field: object) -> str:
    """What a schema field accepts, in words; any value (a catalogue may send anything)."""
    if not isinstance(field, Mapping):
        return "a value"
    choices = field.get("enum")
    if isinstance(choices, list):
        shown = ", ".join(str(choice)[:40] for choice in choices[:_SHOWN_CHOICES])
        more = len(choices) - _SHOWN_CHOICES
        return f"one of {shown}" + (f" (and {more:,} more)" if more > 0 else "")
    kind = field.get("type", "value")
    kind = " or ".join(map(str, kind)) if isinstance(kind, list) else str(kind)
    kind = kind[:60]
    low, high = _number(field.get("minimum")), _number(field.get("maximum"))
    if field.get("x-ui-component") == _SIZE_COMPONENT:
        return f"'W*H' with each side from {low if low is not None else 1} to {high or 'any'}"
    if low is not None or high is not None:
        return f"{_article(kind)} from {_bound(low, '-inf')} to {_bound(high, 'inf')}"
    shortest, longest = _number(field.get("minLength")), _number(field.get("maxLength"))
    if longest is not None:
        return f"{_article(kind)} of at most {longest} characters"
    if shortest:
        return f"a non-empty {kind}"
    return _article(kind)


# --- compiling, bounded ------------------------------------------------------------------------

_compiled: dict[int, tuple[Mapping[str, Any], Any]] = {}
_compiling = threading.Lock()  # checks run in worker threads


def _validator(model: str, schema: Mapping[str, Any]) -> Any | None:
    """The compiled validator of ``schema``, or ``None`` when it is left to the server."""
    with _compiling:
        cached = _compiled.get(id(schema))
        if cached is not None and cached[0] is schema:
            return cached[1]
        validator = _compile(model, schema)
        if len(_compiled) >= _CACHE_SIZE:
            _compiled.pop(next(iter(_compiled)))
        _compiled[id(schema)] = (schema, validator)
        return validator


def _compile(model: str, schema: Mapping[str, Any]) -> Any | None:
    import jsonschema_rs

    reason = _too_costly(schema)
    if reason is None:
        try:
            return jsonschema_rs.Draft202012Validator(
                dict(schema),
                offline=True,  # nothing a server sends makes the client fetch a URL
                pattern_options=jsonschema_rs.RegexOptions(),  # linear time, no backtracking
                validate_formats=False,
                mask="***",  # messages never repeat the payload (it is shown, capped, apart)
                keywords={"x-ui-component": _SizeComponent},
            )
        except Exception as exc:  # a malformed schema: jsonschema-rs says why, we only log it
            reason = f"it does not compile ({type(exc).__name__})"
    log.debug("the catalogue's schema of %s is left to the server: %s", model, reason)
    return None


def _too_costly(schema: Mapping[str, Any]) -> str | None:
    """Why checking ``schema`` could take unbounded time, or ``None`` when it cannot."""
    try:
        size = _Expansion(schema).size(schema, 0)
    except _Unbounded as exc:
        return str(exc)
    return None if size <= MAX_EXPANDED_SUBSCHEMAS else "it expands too far"


class _Unbounded(Exception):
    pass


class _Expansion:
    """Counts the subschemas a validation may visit, ``$ref`` followed, stopping at the cap."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.memo: dict[str, int] = {}
        self.resolving: set[str] = set()
        self.total = 0

    def size(self, node: object, depth: int) -> int:
        if depth > MAX_SCHEMA_DEPTH:
            raise _Unbounded("it is nested too deep")
        self.total += 1
        if self.total > MAX_EXPANDED_SUBSCHEMAS:
            raise _Unbounded("it expands too far")
        count = 1
        if isinstance(node, Mapping):
            for key, value in node.items():
                if key in ("$dynamicRef", "$recursiveRef"):
                    raise _Unbounded("it uses dynamic references")
                if key == "$ref":
                    count += self.ref(value, depth)
                elif key not in _DATA_KEYWORDS:
                    count += self.size(value, depth + 1)
        elif isinstance(node, list):
            count += sum(self.size(item, depth + 1) for item in node)
        return count

    def ref(self, target: object, depth: int) -> int:
        if not isinstance(target, str) or not (target == "#" or target.startswith("#/")):
            raise _Unbounded("it has a reference the client does not follow")
        if target in self.resolving:
            raise _Unbounded("it refers to itself")
        if target not in self.memo:
            self.resolving.add(target)
            self.memo[target] = self.size(self.pointer(target), depth + 1)
            self.resolving.discard(target)
        else:  # counted again: each use is visited again when validating
            self.total += self.memo[target]
            if self.total > MAX_EXPANDED_SUBSCHEMAS:
                raise _Unbounded("it expands too far")
        return self.memo[target]

    def pointer(self, target: str) -> object:
        node: object = self.root
        for raw in target[2:].split("/") if target != "#" else ():
            part = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise _Unbounded("it has a dangling reference")
        return node


# --- the size component ------------------------------------------------------------------------


class _SizeComponent:
    """``"x-ui-component": "size"``: a ``"W*H"`` string, each side within minimum..maximum."""

    def __init__(self, parent_schema: Mapping[str, Any], value: Any, schema_path: Any) -> None:
        self.active = value == _SIZE_COMPONENT
        self.low = _number(parent_schema.get("minimum"))
        self.high = _number(parent_schema.get("maximum"))

    def validate(self, instance: Any) -> None:
        if not self.active or not isinstance(instance, str):
            return
        parts = instance.lower().replace("x", "*").split("*")
        if len(parts) != 2 or not all(part.strip().isdigit() for part in parts):
            raise ValueError("not a 'W*H' size")
        for part in parts:
            # compared by length first: int() of thousands of digits is refused (and slow)
            digits = part.strip().lstrip("0") or "0"
            side = int(digits) if len(digits) <= 18 else float("inf")
            if (self.low is not None and side < self.low) or (
                self.high is not None and side > self.high
            ):
                raise ValueError(f"a side outside {self.low}..{self.high}")


# --- the refusal -------------------------------------------------------------------------------


def _refusal(model: str, schema: Mapping[str, Any], error: Any) -> InvalidInput:
    if error.kind.name == "required":
        field = str(getattr(error.kind, "property", "") or "payload")[:100]
        properties = schema.get("properties")
        shown = properties.get(field) if isinstance(properties, Mapping) else None
        return InvalidInput(
            field, None, _capped(f"given (it is required by {model}): {describe(shown)}")
        )
    field = ".".join(str(part) for part in error.instance_path)[:100] or "payload"
    subschema = _at(schema, error.schema_path[:-1])
    allowed = describe(subschema)
    if allowed == "a value":  # nothing to say in words: the validator's own (masked) message
        allowed = str(error.message)
    return InvalidInput(field, error.instance, _capped(allowed))


def _at(schema: object, path: list[Any]) -> object:
    node = schema
    for part in path:
        found = isinstance(node, Mapping) and part in node
        found = found or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        )
        if not found:
            return None
        node = node[part]  # type: ignore[index]
    return node


def _capped(text: str) -> str:
    return text if len(text) <= _MAX_ALLOWED else f"{text[: _MAX_ALLOWED - 3]}..."


def _number(value: object) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int) and value.bit_length() > 64:
        return float("inf") if value > 0 else float("-inf")
    return value


def _article(kind: str) -> str:
    return f"an {kind}" if kind[:1] in "aeiou" else f"a {kind}"


def _bound(value: object, default: str) -> str:
    return default if value is None else str(value)
