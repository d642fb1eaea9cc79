"""The one converter: recorded bodies, missing/null/extra fields, timestamps, payloads."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from wavespeed_async import ImageEdit, InvalidInput, Prediction, Status, TextToVideo, Timings
from wavespeed_async._wire.convert import (
    converter,
    parse_datetime,
    structure_payload,
    structure_prediction,
    unstructure_payload,
)
from wavespeed_async.errors import ProtocolError

SAMPLES = Path(__file__).parent / "samples"


def sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text())["data"]


def test_completed_sample_parses() -> None:
    prediction = structure_prediction(sample("result-completed.json"))
    assert prediction.status is Status.COMPLETED
    assert prediction.outputs == ("https://cdn.wavespeed.ai/generated/image123.png",)
    assert prediction.timings == Timings(inference=2500)
    assert prediction.created_at == dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone.utc)


def test_failed_sample_without_model_urls_or_outputs_parses() -> None:
    prediction = structure_prediction(sample("result-failed.json"))
    assert prediction.status is Status.FAILED
    assert prediction.error == "Error message here"
    assert (prediction.model, prediction.outputs, prediction.urls) == ("", (), {})


def test_submit_samples_parse_with_and_without_optional_fields() -> None:
    created = structure_prediction(sample("submit-created.json"))
    full = structure_prediction(sample("submit-full.json"))
    assert created.status is full.status is Status.CREATED
    assert created.timings is None
    assert full.urls["get"].endswith(f"/predictions/{full.id}/result")


def test_null_fields_take_defaults_and_extra_fields_are_ignored() -> None:
    data = {
        "id": "abc",
        "model": None,
        "outputs": None,
        "error": None,
        "timings": None,
        "has_nsfw_contents": None,
        "status": "processing",
        "brand_new_field": {"nested": [1, 2]},
    }
    prediction = structure_prediction(data)
    assert prediction == Prediction(id="abc", status=Status.PROCESSING, raw_status="processing")


def test_unknown_status_keeps_its_raw_text() -> None:
    prediction = structure_prediction({"id": "abc", "status": "queued_for_gpu"})
    assert prediction.status is Status.UNKNOWN
    assert prediction.raw_status == "queued_for_gpu"


@pytest.mark.parametrize("data", [{"status": "completed"}, [], "id", {"id": "a", "urls": [1]}])
def test_malformed_prediction_is_a_protocol_error(data: Any) -> None:
    with pytest.raises(ProtocolError):
        structure_prediction(data)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-04-01T12:34:56.789Z", dt.datetime(2023, 4, 1, 12, 34, 56, 789000, dt.timezone.utc)),
        ("2023-04-01T12:34:56Z", dt.datetime(2023, 4, 1, 12, 34, 56, tzinfo=dt.timezone.utc)),
        (
            "2023-04-01T12:34:56.123456789Z",
            dt.datetime(2023, 4, 1, 12, 34, 56, 123456, dt.timezone.utc),
        ),
        ("2023-04-01 12:34:56", dt.datetime(2023, 4, 1, 12, 34, 56, tzinfo=dt.timezone.utc)),
        ("2023-04-01", dt.datetime(2023, 4, 1, tzinfo=dt.timezone.utc)),
        (
            "2023-04-01T12:34:56.5+0800",
            dt.datetime(2023, 4, 1, 12, 34, 56, 500000, dt.timezone(dt.timedelta(hours=8))),
        ),
    ],
)
def test_timestamps_parse_on_every_supported_python(text: str, expected: dt.datetime) -> None:
    assert parse_datetime(text) == expected


def test_unreadable_timestamp_does_not_fail_the_prediction() -> None:
    prediction = structure_prediction({"id": "a", "created_at": "yesterday"})
    assert prediction.created_at is None


def test_prediction_round_trips_through_the_wire_form() -> None:
    original = structure_prediction(sample("submit-full.json"))
    wire = converter.unstructure(original)
    assert wire["created_at"] == "2023-04-01T12:34:56.789Z"
    assert structure_prediction(json.loads(json.dumps(wire))) == original


def test_payloads_unstructure_to_the_api_body() -> None:
    edit = ImageEdit("snow", image="https://x/y.png", size=(1024, 768), seed=5)
    assert unstructure_payload(edit) == {
        "prompt": "snow",
        "image": "https://x/y.png",
        "size": "1024*768",
        "seed": 5,
        "enable_base64_output": False,
        "enable_sync_mode": False,
    }
    assert unstructure_payload({"prompt": "x", "lora": None}) == {"prompt": "x"}


def test_payload_bodies_structure_back_with_validation() -> None:
    body = unstructure_payload(TextToVideo("fox", aspect_ratio="9:16", seed=7))
    assert structure_payload(body, TextToVideo) == TextToVideo("fox", aspect_ratio="9:16", seed=7)
    with pytest.raises(InvalidInput, match="image"):
        structure_payload({"prompt": "snow"}, ImageEdit)
    with pytest.raises(InvalidInput, match="seed"):
        structure_payload({"prompt": "fox", "seed": "7"}, TextToVideo)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-04-01T12:34Z", dt.datetime(2023, 4, 1, 12, 34, tzinfo=dt.timezone.utc)),
        ("2023-04-01t12:34:56z", dt.datetime(2023, 4, 1, 12, 34, 56, tzinfo=dt.timezone.utc)),
        (
            "2023-04-01T12:34:56-05:30",
            dt.datetime(2023, 4, 1, 12, 34, 56, tzinfo=dt.timezone(-dt.timedelta(hours=5.5))),
        ),
        (" 2023-04-01T12:34:56.1Z ", dt.datetime(2023, 4, 1, 12, 34, 56, 100000, dt.timezone.utc)),
    ],
)
def test_more_timestamp_forms_parse(text: str, expected: dt.datetime) -> None:
    parsed = parse_datetime(text)
    assert parsed == expected
    assert parsed is not None
    assert parsed.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize("text", ["", "yesterday", "2023-04-01T12", "2023-04-01T12:34:56+8"])
def test_unreadable_timestamps_are_none_and_logged(
    text: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert parse_datetime(text) is None
    assert "unparseable created_at" in caplog.text


def test_numeric_created_at_is_unix_seconds_but_a_boolean_is_not() -> None:
    prediction = structure_prediction({"id": "a", "created_at": 1_700_000_000})
    assert prediction.created_at == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.timezone.utc)
    assert structure_prediction({"id": "a", "created_at": 1.5}).created_at == dt.datetime(
        1970, 1, 1, 0, 0, 1, 500000, tzinfo=dt.timezone.utc
    )
    assert structure_prediction({"id": "a", "created_at": True}).created_at is None


def test_times_are_sent_in_utc_with_milliseconds_and_a_z() -> None:
    eight = dt.timezone(dt.timedelta(hours=8))
    aware = dt.datetime(2026, 1, 1, 20, 0, 0, 123456, eight)
    assert converter.unstructure(aware) == "2026-01-01T12:00:00.123Z"
    naive = dt.datetime(2026, 1, 1, 12, 0, 0)
    assert converter.unstructure(naive) == "2026-01-01T12:00:00.000Z"  # naive is UTC


def test_the_wire_status_keeps_the_raw_text_and_falls_back_to_the_member() -> None:
    odd = structure_prediction({"id": "a", "status": "Queued"})
    assert converter.unstructure(odd)["status"] == "Queued"
    assert converter.unstructure(Prediction("a", status=Status.COMPLETED))["status"] == "completed"
    wire = converter.unstructure(Prediction("a"))
    assert "raw_status" not in wire
    assert "created_at" not in wire  # None fields are left out
    assert "timings" not in wire
    assert structure_prediction({"id": "a", "status": None}).raw_status == ""


def test_a_malformed_prediction_says_what_is_wrong() -> None:
    with pytest.raises(ProtocolError, match="expected a prediction object, got list"):
        structure_prediction([])
    with pytest.raises(ProtocolError, match=r"malformed prediction: .*\$\.urls"):
        structure_prediction({"id": "a", "urls": [1]})
    with pytest.raises(ProtocolError, match=r"malformed prediction: .*id"):
        structure_prediction({"status": "completed"})


def test_payloads_need_a_mapping_and_their_required_fields() -> None:
    with pytest.raises(InvalidInput, match="body") as info:
        structure_payload(["prompt"], TextToVideo)
    assert info.value.value == "list"
    with pytest.raises(InvalidInput, match="given \\(it is required\\)") as missing:
        structure_payload({}, TextToVideo)
    assert missing.value.field == "prompt"
    edit = structure_payload(
        {"prompt": "snow", "image": "https://x/y.png", "size": "512*512"}, ImageEdit
    )
    assert edit.size == (512, 512)
    assert structure_payload({"prompt": "fox", "extra": 1}, TextToVideo) == TextToVideo("fox")


def test_unstructure_payload_refuses_what_is_not_a_mapping_or_a_model() -> None:
    with pytest.raises(InvalidInput, match="payload"):
        unstructure_payload(["prompt"])
    assert unstructure_payload({1: "x"}) == {"1": "x"}
    assert unstructure_payload(TextToVideo("fox")) == {
        "prompt": "fox",
        "aspect_ratio": "16:9",
        "seed": -1,
    }


def test_times_are_sent_in_utc_whatever_the_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        naive = dt.datetime(2026, 1, 1, 12, 0, 0)
        assert converter.unstructure(naive) == "2026-01-01T12:00:00.000Z"
        eight = dt.timezone(dt.timedelta(hours=8))
        assert converter.unstructure(dt.datetime(2026, 1, 1, 20, tzinfo=eight)) == (
            "2026-01-01T12:00:00.000Z"
        )
    finally:
        monkeypatch.undo()
        time.tzset()


def test_payload_errors_name_the_field_the_value_and_what_is_allowed() -> None:
    cases: list[tuple[Callable[[], object], tuple[str, object, str]]] = [
        (lambda: structure_payload([], TextToVideo), ("body", "list", "a JSON object")),
        (lambda: structure_payload({}, TextToVideo), ("prompt", None, "given (it is required)")),
        (lambda: unstructure_payload(3), ("payload", 3, "a mapping or a payload model")),
    ]
    for call, expected in cases:
        with pytest.raises(InvalidInput) as info:
            call()
        assert (info.value.field, info.value.value, info.value.allowed) == expected


def test_every_problem_of_a_malformed_prediction_is_listed() -> None:
    with pytest.raises(ProtocolError) as info:
        structure_prediction({"id": "a", "urls": [1], "input": 3})
    assert str(info.value) == (
        "malformed prediction: expected a mapping @ $.urls; expected a mapping @ $.input"
    )


def test_an_unreadable_timestamp_is_logged_with_its_text(caplog: pytest.LogCaptureFixture) -> None:
    parse_datetime("yesterday")
    assert [record.getMessage() for record in caplog.records] == [
        "unparseable created_at 'yesterday'; keeping None"
    ]


def test_decoded_json_is_too_deep_past_the_payload_depth_whatever_the_python() -> None:
    from wavespeed_async._wire.convert import MAX_PAYLOAD_DEPTH, nested_too_deep

    def lists(levels: int) -> object:
        value: object = 0
        for _ in range(levels):
            value = [value]
        return value

    def objects(levels: int) -> object:
        value: object = "leaf"
        for _ in range(levels):
            value = {"k": value, "x": 1}
        return value

    for nest in (lists, objects):
        assert not nested_too_deep(nest(MAX_PAYLOAD_DEPTH))
        assert nested_too_deep(nest(MAX_PAYLOAD_DEPTH + 1))
        assert nested_too_deep(nest(5000))  # what Python 3.13's json.loads decodes
    assert not nested_too_deep("text")
    assert not nested_too_deep({"a": [1, {"b": None}], "c": 2.5})
