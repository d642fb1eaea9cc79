"""The pure protocol: requests built, responses mapped to data or the right error."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wavespeed_async import (
    APIError,
    AuthenticationError,
    ConfigurationError,
    InvalidInput,
    InvalidRequest,
    NotFound,
    Prediction,
    ProtocolError,
    RateLimited,
    ServerError,
    WaveSpeedError,
)
from wavespeed_async._convert import structure_prediction
from wavespeed_async._protocol import (
    check_base_url,
    check_model_id,
    is_sync_timeout,
    parse_data,
    parse_retry_after,
    parse_upload_ticket,
    result_request,
    submit_request,
)

SAMPLES = Path(__file__).parent / "samples"
BASE = "https://api.wavespeed.ai"


def parse_prediction(status: int, headers: dict[str, str], body: bytes) -> Prediction:
    """What the client does with a submit or result answer: the envelope, then the data."""
    return structure_prediction(parse_data(status, headers, body))


def envelope(code: int, message: str, data: Any = None) -> bytes:
    return json.dumps({"code": code, "message": message, "data": data}).encode()


def test_submit_request_targets_the_model_and_marks_it_billable() -> None:
    request = submit_request(BASE, "bytedance/dreamina-v3.0/edit", {"prompt": "x"})
    assert (request.method, request.url) == ("POST", f"{BASE}/api/v3/bytedance/dreamina-v3.0/edit")
    assert request.creates_task
    assert request.json == {"prompt": "x"}


def test_webhook_is_an_encoded_query_parameter() -> None:
    request = submit_request(BASE, "m/x", {}, webhook="https://me.example/hook?a=1&b=2")
    assert (
        request.url == f"{BASE}/api/v3/m/x?webhook=https%3A%2F%2Fme.example%2Fhook%3Fa%3D1%26b%3D2"
    )
    with pytest.raises(InvalidInput, match="webhook"):
        submit_request(BASE, "m/x", {}, webhook="ftp://me.example/hook")


@pytest.mark.parametrize("model", ["", "../predictions/x", "a/../b", "m?x=1", "/abs", "a b"])
def test_model_ids_that_escape_the_path_are_refused(model: str) -> None:
    with pytest.raises(InvalidInput, match="model"):
        check_model_id(model)


@pytest.mark.parametrize("prediction_id", ["", "a/b", "..", "x?y", "a b"])
def test_prediction_ids_must_be_one_path_segment(prediction_id: str) -> None:
    with pytest.raises(InvalidInput, match="prediction_id"):
        result_request(BASE, prediction_id)


def test_result_request_url() -> None:
    assert result_request(BASE, "abc_1-2").url == f"{BASE}/api/v3/predictions/abc_1-2/result"


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8765", "http://localhost:1", "http://[::1]:80", "https://x.y/"]
)
def test_base_url_allows_https_and_plain_http_to_loopback(url: str) -> None:
    assert not check_base_url(url).endswith("/")


@pytest.mark.parametrize(
    "url",
    ["http://api.example.com", "ftp://x", "api.wavespeed.ai", "https://u:p@x.y", "https://x?y"],
)
def test_base_url_refuses_what_would_expose_the_key(url: str) -> None:
    with pytest.raises(ConfigurationError):
        check_base_url(url)


def test_plain_http_can_be_allowed_explicitly() -> None:
    assert check_base_url("http://api.example.com", allow_insecure_http=True)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, InvalidRequest),
        (401, AuthenticationError),
        (403, AuthenticationError),
        (404, NotFound),
        (413, InvalidRequest),
        (429, RateLimited),
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
        (504, ServerError),
        (302, APIError),
    ],
)
def test_http_status_maps_to_a_typed_error(status: int, error: type[APIError]) -> None:
    with pytest.raises(error, match=f"HTTP {status}: no such thing") as info:
        parse_data(status, {}, envelope(status, "no such thing"), prediction_id="p1")
    assert info.value.status == status
    assert info.value.prediction_id == "p1"


def test_error_with_an_html_body_keeps_an_excerpt() -> None:
    with pytest.raises(ServerError, match="Bad Gateway") as info:
        parse_data(502, {}, b"<html>\n<body><h1>502 Bad Gateway</h1></body></html>")
    assert "<h1>502 Bad Gateway</h1>" in info.value.body


def test_a_200_carrying_an_error_code_is_an_error() -> None:
    with pytest.raises(InvalidRequest, match="prompt is required") as info:
        parse_data(200, {}, envelope(400, "prompt is required"))
    assert (info.value.status, info.value.code) == (400, 400)


@pytest.mark.parametrize(
    "body", [b"<html>oops</html>", b"", b"[1, 2]", b'{"code": 200, "message": "ok"}', b"\xff\xfe"]
)
def test_a_200_that_is_not_the_envelope_is_a_protocol_error(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_data(200, {}, body)


def test_retry_after_in_seconds_and_as_an_http_date() -> None:
    now = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
    assert parse_retry_after({"Retry-After": "7"}, now=now) == 7.0
    assert parse_retry_after({"Retry-After": "Thu, 01 Jan 2026 12:00:30 GMT"}, now=now) == 30.0
    assert parse_retry_after({"Retry-After": "soon"}, now=now) is None
    assert parse_retry_after({}, now=now) is None
    with pytest.raises(RateLimited) as info:
        parse_data(429, {"Retry-After": "3"}, b"slow down")
    assert info.value.retry_after == 3.0


def test_sync_timeout_is_recognised_by_code_or_text() -> None:
    def prediction(**data: Any) -> Any:
        return parse_prediction(200, {}, envelope(200, "ok", {"id": "a", **data}))

    assert is_sync_timeout(prediction(status="processing", code=5004))
    assert is_sync_timeout(prediction(status="processing", error="Sync mode timed out after 60s"))
    assert not is_sync_timeout(prediction(status="completed", outputs=["https://x/y.png"]))


def test_upload_ticket_sample_parses() -> None:
    data = json.loads((SAMPLES / "upload-ticket.json").read_text())["data"]
    ticket = parse_upload_ticket(data)
    assert ticket.method == "PUT"
    assert ticket.headers == {"Content-Type": "image/png"}
    assert ticket.download_url == "https://cdn.wavespeed.ai/uploads/abc/in.png"
    with pytest.raises(ProtocolError):
        parse_upload_ticket({"upload": {"method": "POST", "url": "x"}, "download_url": "y"})


@given(status=st.sampled_from([200, 400, 404, 429, 500]), body=st.binary(max_size=200))
def test_arbitrary_bytes_only_raise_library_errors(status: int, body: bytes) -> None:
    with contextlib.suppress(WaveSpeedError):
        parse_prediction(status, {}, body)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
prediction_like = st.fixed_dictionaries(
    {"id": st.text(min_size=1, max_size=10)},
    optional={
        key: json_values
        for key in ("status", "outputs", "urls", "created_at", "timings", "error", "code", "model")
    },
)


@given(data=json_values | prediction_like)
def test_arbitrary_json_data_only_raises_library_errors(data: Any) -> None:
    with contextlib.suppress(WaveSpeedError):
        parse_prediction(200, {}, envelope(200, "ok", data))
