"""The one converter: recorded bodies, missing/null/extra fields, timestamps, payloads."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from wavespeed_async import ImageEdit, InvalidInput, Prediction, Status, TextToVideo, Timings
from wavespeed_async._convert import (
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
