"""A catalogue's schema is a server's answer: whatever it holds, checking a payload against it
ends in :class:`InvalidInput` or leaves the payload to the server, with a message of bounded
length, never a raw error."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wavespeed_async import InvalidInput
from wavespeed_async._wire.schema import validate_payload

MODEL = "acme/hostile-model"


def outcome(schema: dict[str, Any], payload: dict[str, Any]) -> InvalidInput | None:
    """The refusal of ``payload``, or ``None`` when it passes or is left to the server."""
    try:
        validate_payload(MODEL, schema, payload)
    except InvalidInput as refused:
        return refused
    return None


@pytest.mark.parametrize(
    "schema",
    [
        {"properties": ["prompt"]},
        {"properties": {"prompt": {"type": "words"}}},
        {"properties": {"prompt": {"type": "string", "pattern": "(unclosed"}}},
        {"properties": {"prompt": {"$ref": "#"}}},
        {"properties": {"prompt": {"$ref": "#/$defs/nowhere"}}},
        {"properties": {"prompt": {"$ref": "urn:elsewhere"}}},
        {"properties": {"steps": {"type": "integer", "minimum": "ten"}}},
        {"properties": {"prompt": {"type": "string", "maxLength": -3}}},
        {"required": "prompt"},
        {"type": 7},
    ],
    ids=[
        "properties-a-list",
        "unknown-type",
        "bad-regex",
        "self-ref",
        "dangling-ref",
        "urn-ref",
        "string-minimum",
        "negative-maxLength",
        "required-a-string",
        "type-a-number",
    ],
)
def test_a_malformed_schema_is_left_to_the_server(schema: dict[str, Any]) -> None:
    assert outcome(schema, {"prompt": "a fox", "steps": 30}) is None


def test_a_size_of_5000_digits_is_invalid_input_naming_the_field() -> None:
    schema = {
        "properties": {
            "size": {"type": "string", "x-ui-component": "size", "minimum": 256, "maximum": 1536}
        }
    }
    refused = outcome(schema, {"size": "9" * 5_000 + "*1024"})
    assert refused is not None
    assert refused.field == "size"
    assert "256 to 1536" in refused.allowed
    assert len(str(refused)) < 300


def test_an_enum_of_200000_values_gives_a_short_message() -> None:
    schema = {"properties": {"voice": {"enum": [f"voice-{n}" for n in range(200_000)]}}}
    refused = outcome(schema, {"voice": "none of them"})
    assert refused is not None
    assert refused.field == "voice"
    assert "and 199,988 more" in refused.allowed
    assert len(str(refused)) < 1_000


def test_a_long_value_is_shown_capped_in_the_message() -> None:
    schema = {"properties": {"prompt": {"type": "string", "maxLength": 10}}}
    refused = outcome(schema, {"prompt": "x" * 1_000_000})
    assert refused is not None
    assert len(str(refused)) < 300


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
KEYWORDS = st.sampled_from(
    [
        "type", "enum", "const", "minimum", "maximum", "minLength", "maxLength", "pattern",
        "items", "properties", "required", "allOf", "anyOf", "oneOf", "not", "$ref",
        "x-ui-component", "additionalProperties", "format", "multipleOf",
    ]
)  # fmt: skip
SCHEMAS = st.recursive(
    st.dictionaries(KEYWORDS, JSON, max_size=4),
    lambda inner: st.dictionaries(KEYWORDS | st.just("prompt"), inner | JSON, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=SCHEMAS, payload=st.dictionaries(st.sampled_from(["prompt", "size"]), JSON))
def test_any_schema_and_payload_end_in_invalid_input_or_pass(
    schema: dict[str, Any], payload: dict[str, Any]
) -> None:
    refused = outcome({"properties": schema}, payload)
    if refused is not None:
        assert len(str(refused)) < 1_000
