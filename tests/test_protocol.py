"""The pure protocol: requests built, responses mapped to data or the right error."""

from __future__ import annotations

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
    InsufficientBalance,
    InvalidInput,
    InvalidRequest,
    NotFound,
    Prediction,
    ProtocolError,
    RateLimited,
    ServerError,
    Status,
    WaveSpeedError,
)
from wavespeed_async._wire.convert import structure_prediction
from wavespeed_async._wire.protocol import (
    UploadTicket,
    auth_headers,
    check_base_url,
    check_model_id,
    history_request,
    is_sync_timeout,
    parse_data,
    parse_history,
    parse_retry_after,
    parse_upload_ticket,
    redact,
    result_request,
    submit_request,
    upload_ticket_request,
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
    [
        "http://api.example.com",
        "ftp://x",
        "api.wavespeed.ai",
        "https://u:p@x.y",
        "https://user@x.y",
        "https://@x.y",
        "https://x?y",
        "https://x#y",
    ],
)
def test_base_url_refuses_what_would_expose_the_key(url: str) -> None:
    with pytest.raises(ConfigurationError):
        check_base_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:99999",
        "http://127.0.0.1:0",
        "http://[::1",
        "https://api.wave speed.ai",
        "https://api.wavespeed.ai/v 3",
        "https://api\twavespeed.ai",
        "https://api.wavespeed.ai:port",
        "https://exa$mple.com",
        "https://-bad.example",
    ],
)
def test_a_base_url_that_cannot_be_sent_to_is_refused_at_once(url: str) -> None:
    with pytest.raises(ConfigurationError, match="base_url"):
        check_base_url(url)


def test_the_base_url_is_stripped_of_spaces_around_it_and_trailing_slashes() -> None:
    assert (
        check_base_url("  https://api.wavespeed.ai/proxy//  ") == "https://api.wavespeed.ai/proxy"
    )
    assert check_base_url("https://API.example.com:8443") == "https://API.example.com:8443"


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
    try:
        prediction = parse_prediction(status, {}, body)
    except WaveSpeedError as caught:
        error: WaveSpeedError = caught
    else:
        assert status == 200
        assert isinstance(prediction, Prediction)
        assert prediction.id == json.loads(body)["data"]["id"]
        return
    if isinstance(error, APIError):  # the status, or a 2xx's envelope code, said what is wrong
        assert error.status == (status if status != 200 else error.code)
        assert len(error.body) <= 300
    else:
        assert isinstance(error, ProtocolError)
        assert status == 200  # only a success can fail to be understood


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
    try:
        prediction = parse_prediction(200, {}, envelope(200, "ok", data))
    except ProtocolError:
        return  # the one error a well-formed envelope with odd data may raise
    assert isinstance(data, dict)
    assert prediction.id == str(data["id"])
    raw_status = data.get("status")
    assert prediction.raw_status == ("" if raw_status is None else str(raw_status))
    assert prediction.status is Status.parse(prediction.raw_status)


# --- hardening: what the review of issue #10 found ------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 202])
def test_deeply_nested_json_is_a_protocol_error_not_a_recursion_error(status: int) -> None:
    with pytest.raises(ProtocolError, match="envelope"):
        parse_data(status, {}, b"[" * 200_000)
    deep = b'{"code": 200, "data": ' + b"[" * 200_000 + b"}"
    with pytest.raises(ProtocolError):
        parse_data(status, {}, deep)


def test_an_error_answer_nested_too_deeply_is_still_the_status_error() -> None:
    with pytest.raises(ServerError) as info:
        parse_data(502, {}, b"[" * 200_000)
    assert info.value.status == 502
    assert info.value.body == "[" * 300


def test_a_prediction_nested_too_deeply_is_a_protocol_error() -> None:
    nested: list[Any] = []
    for _ in range(200_000):
        nested = [nested]
    with pytest.raises(ProtocolError) as info:
        structure_prediction({"id": "p1", "outputs": nested})
    assert str(info.value).startswith("malformed prediction: ")
    assert "maximum recursion depth exceeded" in str(info.value)


@pytest.mark.parametrize("status", [201, 202, 204, 299])
def test_any_2xx_carrying_the_envelope_returns_its_data(status: int) -> None:
    created = {"id": "task-1", "status": "created"}
    assert parse_data(status, {}, envelope(200, "success", created)) == created
    assert parse_data(status, {}, envelope(status, "accepted", created)) == created


@pytest.mark.parametrize("code", [199, 300, 302])
def test_an_envelope_code_outside_2xx_is_an_error_even_under_http_200(code: int) -> None:
    with pytest.raises(APIError) as info:
        parse_data(200, {}, envelope(code, "moved", {"id": "x"}))
    assert info.value.code == code


def test_the_status_and_the_request_id_are_kept_on_api_errors() -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_data(422, {"X-Request-Id": "req-9"}, envelope(422, "bad size"), prediction_id="p")
    assert (info.value.status, info.value.code, info.value.request_id) == (422, 422, "req-9")
    assert info.value.retry_after is None
    assert info.value.message == "HTTP 422: bad size"


@pytest.mark.parametrize(
    "body",
    [
        envelope(400, "insufficient Balance for this task"),
        json.dumps({"error": "Balance too low"}).encode(),
        json.dumps({"detail": "balance"}).encode(),
    ],
)
def test_balance_errors_are_insufficient_balance(body: bytes) -> None:
    with pytest.raises(InsufficientBalance, match=r"(?i)balance"):
        parse_data(402, {}, body)


def test_a_server_error_that_mentions_the_balance_is_still_a_server_error() -> None:
    with pytest.raises(ServerError):
        parse_data(500, {}, envelope(500, "balance service down"))


def test_the_message_comes_from_message_error_or_detail_in_that_order() -> None:
    both = json.dumps({"message": "", "error": "from error", "detail": "from detail"}).encode()
    with pytest.raises(InvalidRequest, match="from error"):
        parse_data(400, {}, both)
    with pytest.raises(InvalidRequest, match=r"^HTTP 400: from detail$"):
        parse_data(400, {}, json.dumps({"error": 3, "detail": "from detail"}).encode())
    with pytest.raises(InvalidRequest, match=r"^HTTP 400: HTTP 400$"):
        parse_data(400, {}, b"")
    with pytest.raises(InvalidRequest, match=r"^HTTP 400: error code 400$"):
        parse_data(200, {}, json.dumps({"code": "400", "data": None}).encode())


def test_a_code_that_is_not_a_number_is_ignored() -> None:
    for code in (True, "abc", 2.5, None):
        body = json.dumps({"code": code, "data": {"id": "x"}}).encode()
        assert parse_data(200, {}, body) == {"id": "x"}


def test_error_excerpts_are_capped_and_whitespace_collapsed() -> None:
    body = b"  <html>\n\n  <p>" + b"x" * 1000 + b"</p>"
    with pytest.raises(ServerError) as info:
        parse_data(500, {}, body)
    assert info.value.body.startswith("<html> <p>xxx")
    assert len(info.value.body) == 300


KEY = "sk-live-0123456789abcdef0123"


def test_redact_removes_the_key_and_any_bearer_token() -> None:
    assert redact(f"key={KEY}!", KEY) == "key=***!"
    assert redact(f"KEY={KEY.upper()}", KEY) == "KEY=***"
    assert redact("Authorization: Bearer abc.def-ghi", None) == "Authorization: Bearer ***"
    assert redact('{"authorization": "bearer tok123"}', None) == '{"authorization": "bearer ***"}'
    assert redact("BEARER\tx", "") == "BEARER ***"
    assert redact("nothing to hide", KEY) == "nothing to hide"


def test_server_text_echoing_the_key_is_redacted_everywhere_in_the_error() -> None:
    echoed = json.dumps(
        {"code": 401, "message": f"bad key {KEY} in 'Authorization: Bearer {KEY}'"}
    ).encode()
    with pytest.raises(AuthenticationError) as info:
        parse_data(401, {}, echoed, secret=KEY)
    for text in (str(info.value), repr(info.value), info.value.body, info.value.message):
        assert KEY not in text
    assert "bad key ***" in str(info.value)


def test_a_bearer_token_is_redacted_even_without_the_key() -> None:
    html = f"<pre>GET /x\nAuthorization: Bearer {KEY}\n</pre>".encode()
    with pytest.raises(ServerError) as info:
        parse_data(502, {}, html)
    assert KEY not in str(info.value)
    assert KEY not in info.value.body
    with pytest.raises(ProtocolError) as protocol:
        parse_data(200, {}, html, secret=KEY)
    assert KEY not in str(protocol.value)


def test_a_key_cut_by_the_excerpts_end_is_redacted_too() -> None:
    body = b"x" * 290 + KEY.encode()
    with pytest.raises(ServerError) as info:
        parse_data(500, {}, body, secret=KEY)
    assert KEY[:10] not in info.value.body
    assert KEY[:10] not in str(info.value)
    with pytest.raises(ProtocolError) as protocol:
        parse_data(200, {}, b'{"code": 200, "echo": "' + KEY.encode() + b'"}', secret=KEY)
    assert KEY not in str(protocol.value)


def test_retry_after_as_an_http_date_is_read_against_the_system_clock() -> None:
    assert (parse_retry_after({"Retry-After": "Fri, 01 Jan 2100 00:00:00 GMT"}) or 0) > 1e9
    assert parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert parse_retry_after({"Retry-After": "-5"}) == 0.0
    assert parse_retry_after({"Retry-After": "1.5"}) == 1.5


def test_retry_after_as_a_date_without_a_zone_is_taken_as_utc() -> None:
    now = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
    assert parse_retry_after({"Retry-After": "Thu, 01 Jan 2026 12:01:00 -0000"}, now=now) == 60.0


def test_history_page_bounds() -> None:
    for page_size in (1, 100):
        assert history_request(BASE, page_size=page_size).json["page_size"] == page_size
    for page_size in (0, 101):
        with pytest.raises(InvalidInput, match="page_size"):
            history_request(BASE, page_size=page_size)
    assert history_request(BASE, page=1).json["page"] == 1
    with pytest.raises(InvalidInput, match="page"):
        history_request(BASE, page=0)


def test_history_request_carries_the_filters_in_the_api_form() -> None:
    after = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
    request = history_request(BASE, model="m/x", status="completed", created_after=after, page=2)
    assert (request.method, request.url) == ("POST", f"{BASE}/api/v3/predictions")
    assert request.json == {
        "page": 2,
        "page_size": 100,
        "model": "m/x",
        "status": "completed",
        "created_after": "2026-01-01T12:00:00.000Z",
    }
    assert not request.creates_task
    with pytest.raises(ProtocolError):
        parse_history({"items": None})
    assert [p.id for p in parse_history({"items": [{"id": "a"}, {"id": "b"}]})] == ["a", "b"]


@pytest.mark.parametrize(
    "data",
    [
        {"upload": {"method": "PUT"}, "download_url": "https://cdn/x"},
        {"upload": {"method": "PUT", "url": 3}, "download_url": "https://cdn/x"},
        {"upload": {"url": "https://s3/x"}},
        {"upload": "https://s3/x", "download_url": "https://cdn/x"},
        {"upload": {"url": "https://s3/x", "headers": ["a"]}, "download_url": "https://cdn/x"},
        [],
    ],
)
def test_an_unusable_upload_ticket_is_a_protocol_error(data: Any) -> None:
    with pytest.raises(ProtocolError):
        parse_upload_ticket(data)


def test_an_upload_ticket_defaults_to_put_without_headers() -> None:
    ticket = parse_upload_ticket({"upload": {"url": "https://s3/x"}, "download_url": "https://c/x"})
    assert ticket == UploadTicket("PUT", "https://s3/x", {}, "https://c/x")
    request = upload_ticket_request(BASE, "in.png", 12, "image/png")
    assert (request.method, request.url) == ("POST", f"{BASE}/api/v3/media/uploads")
    assert request.json == {"filename": "in.png", "size": 12, "content_type": "image/png"}


def invalid(call: Any) -> tuple[str, Any, str]:
    """The field, value and allowed values an InvalidInput names."""
    with pytest.raises(InvalidInput) as info:
        call()
    return info.value.field, info.value.value, info.value.allowed


def test_request_errors_name_the_field_the_value_and_what_is_allowed() -> None:
    assert invalid(lambda: check_model_id("a/../b")) == (
        "model",
        "a/../b",
        "a model id such as 'wavespeed-ai/flux-dev'",
    )
    assert invalid(lambda: result_request(BASE, "a/b")) == (
        "prediction_id",
        "a/b",
        "a task id (letters, digits, - and _)",
    )
    assert invalid(lambda: submit_request(BASE, "m/x", {}, webhook="ftp://h")) == (
        "webhook",
        "ftp://h",
        "an http(s) URL",
    )
    assert invalid(lambda: history_request(BASE, page_size=0)) == (
        "page_size",
        0,
        "an integer from 1 to 100",
    )
    assert invalid(lambda: history_request(BASE, page=0)) == ("page", 0, "an integer, 1 or more")


def test_requests_carry_what_the_transport_needs() -> None:
    submit = submit_request(BASE, "m/x", {"prompt": "p"}, sync_wait=30.0)
    assert (submit.model, submit.read_timeout) == ("m/x", 30.0)
    assert submit_request(BASE, "m/x", {}).read_timeout is None
    result = result_request(BASE, "abc")
    assert (result.method, result.creates_task, result.json) == ("GET", False, None)
    assert history_request(BASE).json == {"page": 1, "page_size": 100}
    before = dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc)
    assert history_request(BASE, created_before=before).json["created_before"] == (
        "2026-01-02T00:00:00.000Z"
    )
    assert auth_headers("sk-1") == {"Authorization": "Bearer sk-1"}


def test_protocol_errors_say_what_was_missing() -> None:
    with pytest.raises(ProtocolError, match=r"^history page without items$"):
        parse_history([])
    with pytest.raises(ProtocolError, match=r"^upload ticket without an upload instruction$"):
        parse_upload_ticket({"download_url": "https://c/x"})
    bad_headers = {
        "upload": {"url": "https://s3/x", "headers": ["a"]},
        "download_url": "https://c/x",
    }
    with pytest.raises(ProtocolError, match=r"^upload ticket headers are not an object$"):
        parse_upload_ticket(bad_headers)


def test_base_url_errors_say_why() -> None:
    with pytest.raises(
        ConfigurationError, match=r"^base_url must not carry credentials, a query or"
    ):
        check_base_url("https://u@x.y")
    with pytest.raises(ConfigurationError) as insecure:
        check_base_url("http://api.example.com")
    assert str(insecure.value) == (
        "refusing to send the API key over plain http to api.example.com; use https, or pass"
        " allow_insecure_http=True if this network is trusted"
    )
    with pytest.raises(ConfigurationError, match="http\\(s\\) URL"):
        check_base_url(None)  # type: ignore[arg-type]
    assert check_base_url("https://x.y/BOX/") == "https://x.y/BOX"


def test_a_balance_error_at_400_is_insufficient_balance_and_600_is_no_server_error() -> None:
    with pytest.raises(InsufficientBalance):
        parse_data(400, {}, envelope(400, "balance too low"))
    with pytest.raises(APIError) as info:
        parse_data(600, {}, envelope(600, "odd"))
    assert type(info.value) is APIError


def test_the_excerpt_is_the_full_300_characters_even_with_a_long_key() -> None:
    long_key = "sk-" + "k" * 120
    with pytest.raises(ServerError) as info:
        parse_data(500, {}, b"y" * 1000, secret=long_key)
    assert info.value.body == "y" * 300


def test_a_bare_key_in_server_text_is_redacted_on_every_path() -> None:
    plain = f"upstream said: key {KEY} is wrong".encode()
    with pytest.raises(ServerError) as server:
        parse_data(502, {}, plain, secret=KEY)
    assert str(server.value) == "HTTP 502: upstream said: key *** is wrong"
    with pytest.raises(ProtocolError) as protocol:
        parse_data(200, {}, plain, secret=KEY)
    assert KEY not in str(protocol.value)
    assert "key ***" in str(protocol.value)
    with pytest.raises(AuthenticationError) as enveloped:
        parse_data(200, {}, envelope(401, f"key {KEY} revoked"), secret=KEY, prediction_id="p1")
    assert enveloped.value.message == "HTTP 401: key *** revoked"
    assert enveloped.value.prediction_id == "p1"
