"""Webhooks: the signature scheme, the receivers, and emulator -> receiver -> future."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import socket
import statistics
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import anyio
import attrs
import pytest
from aiohttp import web

from wavespeed_async import (
    AsyncWaveSpeed,
    PollSchedule,
    Prediction,
    PredictionFailed,
    PredictionFuture,
    Status,
    WaveSpeedError,
    WebhookReceiver,
    WebhookVerificationError,
    sign_webhook,
    verify_webhook,
)
from wavespeed_async.emulator import Emulator
from wavespeed_async.errors import ConfigurationError, ProtocolError
from wavespeed_async.webhooks import (
    DEFAULT_TOLERANCE,
    parse_webhook_secret,
    webhook_secret_request,
)

from .support import BODY, NO_RECONCILIATION, SECRET, SIGNED_AT, new_future, serve, signed_headers

pytestmark = pytest.mark.anyio

KEY = "sk-test"
#: Reconciliation at once and often, for tests where the delivery is lost.
FAST_RECONCILIATION = PollSchedule(first_delay=0.01, min_interval=0.02, max_interval=0.05)


def failed_check(headers: dict[str, str], body: bytes = BODY, **kwargs: Any) -> str:
    kwargs.setdefault("now", SIGNED_AT)
    with pytest.raises(WebhookVerificationError) as caught:
        verify_webhook(headers, body, SECRET, **kwargs)
    return caught.value.check


# --- the signature scheme -------------------------------------------------------------------


def test_signature_is_hmac_sha256_over_id_timestamp_body_keyed_with_the_secret_text() -> None:
    key = b"dGVzdC1zZWNyZXQ="
    expected = hmac.new(key, b"msg_1.1700000000." + BODY, hashlib.sha256).hexdigest()
    assert sign_webhook(SECRET, "msg_1", SIGNED_AT, BODY) == f"v3,{expected}"
    decoded_key = hmac.new(b"test-secret", b"msg_1.1700000000." + BODY, hashlib.sha256)
    assert sign_webhook(SECRET, "msg_1", SIGNED_AT, BODY) != f"v3,{decoded_key.hexdigest()}"


def test_the_whsec_prefix_is_stripped_and_optional() -> None:
    with_prefix = sign_webhook(SECRET, "msg_1", SIGNED_AT, BODY)
    assert sign_webhook(SECRET.removeprefix("whsec_"), "msg_1", SIGNED_AT, BODY) == with_prefix
    prediction = verify_webhook(
        signed_headers(), BODY, SECRET.removeprefix("whsec_"), now=SIGNED_AT
    )
    assert prediction.id == "pred_abc123"


def test_a_valid_delivery_verifies_into_its_prediction() -> None:
    prediction = verify_webhook(signed_headers(), BODY, SECRET, now=SIGNED_AT + 10)
    assert prediction.id == "pred_abc123"
    assert prediction.status is Status.COMPLETED
    assert prediction.outputs == ("https://cdn.wavespeed.ai/generated/image123.png",)
    assert prediction.input["prompt"].startswith("Octopus")
    # str bodies and any header capitalisation work too
    headers = {name.title(): value for name, value in signed_headers().items()}
    assert verify_webhook(headers, BODY.decode(), SECRET, now=SIGNED_AT).id == "pred_abc123"


def test_a_tampered_body_fails_the_signature_check() -> None:
    tampered = BODY.replace(b"image123", b"image999")
    assert failed_check(signed_headers(), tampered) == "signature"


def test_a_wrong_secret_fails_the_signature_check() -> None:
    assert failed_check(signed_headers(secret="whsec_another")) == "signature"


def test_a_signature_of_another_version_is_not_accepted() -> None:
    headers = signed_headers()
    headers["webhook-signature"] = headers["webhook-signature"].replace("v3,", "v1,")
    assert failed_check(headers) == "signature"


def test_any_of_several_signatures_may_match_during_a_secret_rotation() -> None:
    headers = signed_headers()
    old = sign_webhook("whsec_old", "msg_1", SIGNED_AT, BODY)
    headers["webhook-signature"] = f"{old} {headers['webhook-signature']}"
    assert verify_webhook(headers, BODY, SECRET, now=SIGNED_AT).id == "pred_abc123"


@pytest.mark.parametrize(
    ("skew", "accepted"),
    [(0, True), (300, True), (-300, True), (301, False), (-301, False), (86_400, False)],
)
def test_timestamps_more_than_the_tolerance_away_either_way_are_refused(
    skew: int, accepted: bool
) -> None:
    now = SIGNED_AT + skew
    if accepted:
        assert verify_webhook(signed_headers(), BODY, SECRET, now=now).id == "pred_abc123"
    else:
        assert failed_check(signed_headers(), now=now) == "timestamp"


def test_the_tolerance_is_configurable() -> None:
    assert failed_check(signed_headers(), now=SIGNED_AT + 31, tolerance=30) == "timestamp"


def test_a_timestamp_that_is_not_unix_seconds_is_refused_even_if_signed() -> None:
    assert failed_check(signed_headers(timestamp="yesterday")) == "timestamp"


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_fails_the_headers_check(missing: str) -> None:
    headers = signed_headers()
    del headers[missing]
    assert failed_check(headers) == "headers"
    headers[missing] = "  "
    assert failed_check(headers) == "headers"


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"status": "completed"}'])
def test_a_signed_body_that_is_not_a_prediction_fails_the_payload_check(body: bytes) -> None:
    assert failed_check(signed_headers(body), body) == "payload"


def test_the_error_names_the_check_and_never_the_secret() -> None:
    with pytest.raises(WebhookVerificationError) as caught:
        verify_webhook(signed_headers(secret="whsec_x"), BODY, SECRET, now=SIGNED_AT)
    assert isinstance(caught.value, WaveSpeedError)
    assert "signature" in str(caught.value)
    assert "dGVzdC1zZWNyZXQ" not in str(caught.value)


def test_an_empty_secret_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        sign_webhook("whsec_", "msg_1", SIGNED_AT, BODY)
    with pytest.raises(ConfigurationError):
        WebhookReceiver("  ")


def refusal(headers: dict[str, str], body: bytes = BODY, **kwargs: Any) -> str:
    kwargs.setdefault("now", SIGNED_AT)
    with pytest.raises(WebhookVerificationError) as caught:
        verify_webhook(headers, body, SECRET, **kwargs)
    return str(caught.value)


def test_each_refusal_says_what_failed_and_why() -> None:
    assert refusal(signed_headers(secret="whsec_other")) == (
        "webhook signature check failed: no v3 signature matches"
    )
    assert refusal(signed_headers(timestamp="soon")) == (
        "webhook timestamp check failed: not Unix seconds"
    )
    assert refusal(signed_headers(), now=SIGNED_AT + 301) == (
        "webhook timestamp check failed: signed 301 s old; tolerance is 300 s"
    )
    assert refusal(signed_headers(), now=SIGNED_AT + 1, tolerance=0) == (
        "webhook timestamp check failed: signed 1 s old; tolerance is 0 s"
    )
    assert refusal(signed_headers(), now=SIGNED_AT - 400, tolerance=2.5) == (
        "webhook timestamp check failed: signed 400 s in the future; tolerance is 2.5 s"
    )
    headers = signed_headers()
    del headers["webhook-id"]
    assert refusal(headers) == "webhook headers check failed: no webhook-id header"
    assert refusal(signed_headers(b"{"), b"{") == (
        "webhook payload check failed: the body is not readable JSON"
    )
    no_id = b'{"id": "", "status": "completed"}'
    assert refusal(signed_headers(no_id), no_id) == (
        "webhook payload check failed: the prediction has no id"
    )
    assert refusal(signed_headers(b"[]"), b"[]") == (
        "webhook payload check failed: expected a prediction object, got list"
    )
    with pytest.raises(ConfigurationError, match=r"^the webhook secret is empty$"):
        sign_webhook(" whsec_ ", "msg_1", SIGNED_AT, BODY)


def test_without_now_the_system_clock_is_used() -> None:
    fresh = signed_headers(timestamp=int(time.time()))
    assert verify_webhook(fresh, BODY, SECRET).id == "pred_abc123"
    with pytest.raises(WebhookVerificationError, match="old"):
        verify_webhook(signed_headers(timestamp=SIGNED_AT), BODY, SECRET)


def test_a_body_in_the_api_envelope_is_unwrapped_but_a_prediction_is_taken_as_it_is() -> None:
    enveloped = b'{"code": 200, "data": {"id": "p9", "status": "completed"}}'
    assert verify_webhook(signed_headers(enveloped), enveloped, SECRET, now=SIGNED_AT).id == "p9"
    both = b'{"id": "top", "status": "completed", "data": {"id": "inner"}}'
    assert verify_webhook(signed_headers(both), both, SECRET, now=SIGNED_AT).id == "top"


def test_the_webhook_secret_answer_is_read_and_checked() -> None:
    request = webhook_secret_request("https://api.wavespeed.ai")
    assert (request.method, request.url) == (
        "GET",
        "https://api.wavespeed.ai/api/v3/webhook/secret",
    )
    assert parse_webhook_secret({"secret": " whsec_abc "}) == "whsec_abc"
    unusable: list[object] = [{"secret": "  "}, {"secret": 3}, [], None]
    for data in unusable:
        with pytest.raises(ProtocolError, match=r"^webhook secret answer without a secret$"):
            parse_webhook_secret(data)


# --- the receiver's core --------------------------------------------------------------------


def receiver_at(now: float = SIGNED_AT, **kwargs: Any) -> WebhookReceiver:
    return WebhookReceiver(SECRET, clock=lambda: now, **kwargs)


def test_the_receiver_answers_503_until_it_has_a_secret_so_the_platform_retries() -> None:
    receiver = WebhookReceiver(clock=lambda: SIGNED_AT)
    assert receiver.handle(signed_headers(), BODY)[0] == 503
    receiver.set_secret(SECRET)
    assert receiver.handle(signed_headers(), BODY) == (200, "ok")
    assert "dGVzdC1zZWNyZXQ" not in repr(receiver)


def test_the_receiver_refuses_with_400_naming_the_failed_check() -> None:
    receiver = receiver_at(SIGNED_AT + 3600)
    assert receiver.handle(signed_headers(), BODY) == (400, "refused: timestamp check failed")
    assert receiver.rejected == 1
    assert receiver.accepted == 0


async def test_repeated_webhook_ids_are_acknowledged_but_handled_once() -> None:
    seen: list[Prediction] = []
    receiver = receiver_at(on_prediction=seen.append)
    assert receiver.handle(signed_headers(), BODY) == (200, "ok")
    assert receiver.handle(signed_headers(), BODY) == (200, "duplicate")
    assert receiver.handle(signed_headers(webhook_id="msg_2"), BODY) == (200, "ok")
    assert [p.id for p in seen] == ["pred_abc123", "pred_abc123"]
    assert (receiver.accepted, receiver.duplicates) == (2, 1)


class Clock:
    """A settable clock, in Unix seconds."""

    def __init__(self, now: float = SIGNED_AT) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_replay_inside_the_tolerance_is_dropped_after_ten_thousand_other_deliveries() -> None:
    seen: list[Prediction] = []
    receiver = WebhookReceiver(SECRET, on_prediction=seen.append, clock=Clock())
    assert receiver.handle(signed_headers(), BODY) == (200, "ok")
    for number in range(10_001):
        receiver.handle(signed_headers(webhook_id=f"other_{number}"), BODY)
    assert receiver.handle(signed_headers(), BODY) == (200, "duplicate")
    assert len(seen) == 10_002


def test_ids_are_remembered_until_a_replay_would_fail_the_timestamp_check() -> None:
    clock = Clock()
    receiver = WebhookReceiver(SECRET, clock=clock, remember=1)
    assert receiver.handle(signed_headers(), BODY) == (200, "ok")
    clock.now = SIGNED_AT + DEFAULT_TOLERANCE  # the last second a replay still verifies
    assert receiver.handle(signed_headers(), BODY) == (200, "duplicate")
    later = signed_headers(webhook_id="msg_2", timestamp=SIGNED_AT + 200)
    assert receiver.handle(later, BODY)[0] == 503  # msg_1 may still be replayed: full
    clock.now = SIGNED_AT + DEFAULT_TOLERANCE + 1  # msg_1 would now fail verification
    assert receiver.handle(signed_headers(), BODY)[0] == 400
    assert receiver.handle(later, BODY) == (200, "ok")  # so its place was freed


def test_a_full_memory_of_ids_refuses_with_503_rather_than_forgetting() -> None:
    receiver = receiver_at(remember=2)
    for webhook_id in ("msg_1", "msg_2"):
        assert receiver.handle(signed_headers(webhook_id=webhook_id), BODY) == (200, "ok")
    assert receiver.handle(signed_headers(webhook_id="msg_3"), BODY)[0] == 503
    assert receiver.handle(signed_headers(webhook_id="msg_1"), BODY) == (200, "duplicate")
    assert receiver.accepted == 2


def test_a_body_nested_too_deeply_is_refused_with_400() -> None:
    body = b"[" * 200_000
    receiver = receiver_at()
    assert receiver.handle(signed_headers(body), body) == (400, "refused: payload check failed")


async def test_async_callbacks_run_after_the_answer_and_aclose_waits_for_them() -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    finished: list[str] = []

    async def slow_callback(prediction: Prediction) -> None:
        started.set()
        await release.wait()
        finished.append(prediction.id)

    receiver = receiver_at(on_prediction=slow_callback)
    assert receiver.handle(signed_headers(), BODY) == (200, "ok")  # answered before it ran
    await started.wait()
    release.set()
    await receiver.aclose()
    assert finished == ["pred_abc123"]


async def test_failing_callbacks_are_logged_and_the_delivery_still_acknowledged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(prediction: Prediction) -> None:
        raise RuntimeError("database down")

    async def broken_async(prediction: Prediction) -> None:
        raise RuntimeError("queue down")

    assert receiver_at(on_prediction=broken).handle(signed_headers(), BODY)[0] == 200
    receiver = receiver_at(on_prediction=broken_async)
    assert receiver.handle(signed_headers(), BODY)[0] == 200
    await receiver.aclose()
    assert "database down" in caplog.text
    assert "queue down" in caplog.text


async def test_aclose_cancels_callbacks_still_running_after_the_grace_period() -> None:
    async def stuck(prediction: Prediction) -> None:
        await asyncio.Event().wait()

    receiver = receiver_at(on_prediction=stuck)
    receiver.handle(signed_headers(), BODY)
    with anyio.fail_after(5):
        await receiver.aclose(grace=0.01)


async def test_a_delivery_finishes_the_tracked_future_at_once() -> None:
    receiver = receiver_at()
    future = new_future()
    receiver.track(future)
    receiver.handle(signed_headers(), BODY)
    with anyio.fail_after(1):
        prediction = await future
    assert prediction.outputs == ("https://cdn.wavespeed.ai/generated/image123.png",)


async def test_a_delivery_that_beats_its_future_is_kept_for_it() -> None:
    receiver = receiver_at()
    receiver.handle(signed_headers(), BODY)  # the task ended before submit() returned
    future = new_future()
    receiver.track(future)
    assert future.done()
    with anyio.fail_after(1):
        assert (await future).status is Status.COMPLETED


# --- ASGI, in process -----------------------------------------------------------------------


async def call_asgi(
    app: WebhookReceiver,
    method: str = "POST",
    body: bytes = BODY,
    headers: dict[str, str] | None = None,
    chunk: int | None = None,
) -> tuple[int, bytes]:
    size = chunk or max(len(body), 1)
    pieces = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    inbox: list[dict[str, Any]] = [
        {"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1}
        for i, piece in enumerate(pieces)
    ]
    sent: list[Any] = []

    async def receive() -> Any:
        return inbox.pop(0) if inbox else {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    raw_headers = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await app({"type": "http", "method": method, "headers": raw_headers}, receive, send)
    assert sent[0]["type"] == "http.response.start"
    return sent[0]["status"], sent[1]["body"]


async def test_the_asgi_app_verifies_chunked_deliveries() -> None:
    receiver = receiver_at()
    headers = {name.title(): value for name, value in signed_headers().items()}
    assert await call_asgi(receiver, headers=headers, chunk=7) == (200, b"ok")
    assert await call_asgi(receiver, headers=headers) == (200, b"duplicate")
    assert (await call_asgi(receiver, body=BODY + b" ", headers=headers))[0] == 400


async def test_the_asgi_app_answers_200_when_the_callback_raises_and_400_for_deep_json(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(prediction: Prediction) -> None:
        raise RuntimeError("database down")

    receiver = receiver_at(on_prediction=broken)
    assert await call_asgi(receiver, headers=signed_headers()) == (200, b"ok")
    assert "database down" in caplog.text
    deep = b"[" * 200_000
    assert (await call_asgi(receiver, body=deep, headers=signed_headers(deep)))[0] == 400


async def test_the_asgi_app_refuses_other_methods_and_oversized_bodies() -> None:
    receiver = receiver_at(max_body_size=100)
    assert (await call_asgi(receiver, method="GET", body=b""))[0] == 405
    assert (await call_asgi(receiver, headers=signed_headers(), chunk=10))[0] == 413
    declared = {**signed_headers(), "content-length": str(len(BODY))}
    assert (await call_asgi(receiver, headers=declared))[0] == 413


async def test_the_asgi_app_answers_the_lifespan_handshake() -> None:
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[Any] = []

    async def receive() -> Any:
        return inbox.pop(0)

    async def send(message: Any) -> None:
        sent.append(message["type"])

    await receiver_at()({"type": "lifespan"}, receive, send)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


# --- emulator -> receiver (aiohttp, real HTTP) -> future ------------------------------------


def unused_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@attrs.define
class Stack:
    emu: Emulator
    receiver: WebhookReceiver
    client: AsyncWaveSpeed
    hook_url: str
    seen: list[Prediction]

    def result_gets(self, prediction_id: str | None = None) -> int:
        return sum(
            1
            for r in self.emu.requests
            if r.method == "GET"
            and r.path.endswith("/result")
            and (prediction_id is None or prediction_id in r.path)
        )

    def deliveries_reach(self, count: int) -> Callable[[], bool]:
        return lambda: len(self.emu.webhooks.deliveries) >= count

    async def submit(self, prompt: str = "a fox") -> PredictionFuture:
        return await self.client.submit_text_to_video(prompt, webhook=self.hook_url)


@pytest.fixture
def reconcile() -> PollSchedule:
    return NO_RECONCILIATION


@pytest.fixture
async def stack(reconcile: PollSchedule) -> AsyncIterator[Stack]:
    """A frozen emulator delivering to a receiver served by aiohttp, and a hybrid client."""
    seen: list[Prediction] = []
    receiver = WebhookReceiver(on_prediction=seen.append, reconcile_schedule=reconcile)
    app = web.Application()
    app.add_subapp("/hooks", receiver.aiohttp_app())
    runner, origin = await serve(app)
    try:
        async with (
            Emulator(api_key=KEY, speed=0) as emu,
            AsyncWaveSpeed(api_key=KEY, base_url=emu.base_url, webhooks=receiver) as client,
        ):
            receiver.set_secret(await client.webhook_secret())
            yield Stack(emu, receiver, client, f"{origin}/hooks/", seen)
    finally:
        await runner.cleanup()


async def test_the_client_reads_the_webhook_secret_the_emulator_signs_with(stack: Stack) -> None:
    secret = await stack.client.webhook_secret()
    assert secret == stack.emu.webhooks.secret
    assert secret.startswith("whsec_")


async def test_a_delivery_resolves_the_future_without_a_single_poll(stack: Stack) -> None:
    future = await stack.submit()
    assert stack.emu.tasks[future.id].webhook == stack.hook_url
    stack.emu.advance(30)
    with anyio.fail_after(5):
        video = await future
        await stack.emu.wait_for(stack.deliveries_reach(1))  # recorded once its answer is back
    assert video.status is Status.COMPLETED
    assert video.outputs[0].endswith(".mp4")
    assert stack.result_gets(future.id) == 0
    [delivery] = stack.emu.webhooks.deliveries
    assert (delivery.status, delivery.prediction_id, delivery.attempt) == (200, future.id, 1)
    assert [p.id for p in stack.seen] == [future.id]
    assert stack.seen[0].input == {"prompt": "a fox", "aspect_ratio": "16:9", "seed": -1}


async def test_a_failed_task_is_delivered_and_raises_prediction_failed(stack: Stack) -> None:
    stack.emu.fail_next(error="GPU on fire")
    future = await stack.submit()
    stack.emu.advance(30)
    with anyio.fail_after(5), pytest.raises(PredictionFailed, match="GPU on fire"):
        await future
    assert stack.result_gets() == 0


async def test_a_duplicated_delivery_is_acknowledged_twice_and_handled_once(stack: Stack) -> None:
    stack.emu.webhooks.duplicate_next()
    future = await stack.submit()
    stack.emu.advance(30)
    with anyio.fail_after(5):
        await future
        await stack.emu.wait_for(lambda: len(stack.emu.webhooks.deliveries) == 2)
    first, second = stack.emu.webhooks.deliveries
    assert first.webhook_id == second.webhook_id
    assert first.status == second.status == 200
    assert (stack.receiver.accepted, stack.receiver.duplicates) == (1, 1)
    assert len(stack.seen) == 1


async def test_a_delayed_delivery_resolves_the_future_when_it_arrives(stack: Stack) -> None:
    stack.emu.webhooks.delay_next(seconds=20)
    future = await stack.submit()
    stack.emu.advance(30)  # the task is done; its delivery waits 20 more emulated seconds
    with anyio.fail_after(5):
        await stack.emu.wait_for(lambda: not stack.emu.state.webhook_tasks)
    assert stack.emu.webhooks.pending == 1
    assert not future.done()
    assert stack.emu.webhooks.deliveries == []
    stack.emu.advance(20)
    with anyio.fail_after(5):
        await future
        await stack.emu.wait_for(stack.deliveries_reach(1))
    assert stack.emu.webhooks.deliveries[0].at == 50
    assert stack.result_gets(future.id) == 0


@pytest.mark.parametrize("reconcile", [FAST_RECONCILIATION])
async def test_a_dropped_delivery_completes_through_reconciliation(stack: Stack) -> None:
    stack.emu.webhooks.drop_next()
    future = await stack.submit()
    stack.emu.advance(30)
    with anyio.fail_after(5):
        video = await future
    assert video.status is Status.COMPLETED
    [dropped] = stack.emu.webhooks.deliveries
    assert dropped.dropped
    assert dropped.status is None
    assert stack.result_gets(future.id) >= 1
    assert stack.seen == []


@pytest.mark.parametrize("reconcile", [FAST_RECONCILIATION])
async def test_a_cancelled_task_gets_no_delivery_and_reconciliation_finishes_it(
    stack: Stack,
) -> None:
    future = await stack.submit()
    stack.emu.set_status(future.id, "cancelled", "cancelled by an operator")
    with anyio.fail_after(5), pytest.raises(PredictionFailed, match="operator"):
        await future
    assert stack.emu.webhooks.deliveries == []


async def test_a_corrupted_delivery_is_refused_and_the_retry_resolves_the_future(
    stack: Stack,
) -> None:
    stack.emu.webhooks.corrupt_next()
    future = await stack.submit()
    stack.emu.advance(30)
    with anyio.fail_after(5):
        await stack.emu.wait_for(lambda: len(stack.emu.webhooks.deliveries) == 1)
    refused = stack.emu.webhooks.deliveries[0]
    assert (refused.status, refused.corrupted) == (400, True)
    assert stack.receiver.rejected == 1
    assert not future.done()  # a tampered body never reaches the future
    stack.emu.advance(stack.emu.webhooks.retry_delays[0])
    with anyio.fail_after(5):
        await future
        await stack.emu.wait_for(stack.deliveries_reach(2))
    retry = stack.emu.webhooks.deliveries[1]
    assert (retry.status, retry.attempt, retry.webhook_id) == (200, 2, refused.webhook_id)


async def test_non_2xx_answers_are_retried_with_backoff_on_the_emulated_clock(
    stack: Stack,
) -> None:
    real_secret = stack.emu.webhooks.secret
    stack.receiver.set_secret("whsec_not-the-one")  # every delivery is refused for now
    future = await stack.submit()
    stack.emu.advance(30)
    delays = stack.emu.webhooks.retry_delays
    for attempt, delay in enumerate(delays[:2], start=1):
        with anyio.fail_after(5):
            await stack.emu.wait_for(stack.deliveries_reach(attempt))
        assert stack.emu.webhooks.deliveries[-1].status == 400
        stack.emu.advance(delay)
    stack.receiver.set_secret(real_secret)
    with anyio.fail_after(5):
        await future
        await stack.emu.wait_for(stack.deliveries_reach(3))
    times = [d.at for d in stack.emu.webhooks.deliveries]
    assert times == [30, 30 + delays[0], 30 + delays[0] + delays[1]]


async def test_an_unreachable_receiver_is_retried_and_closing_the_emulator_stops_it() -> None:
    url = f"http://127.0.0.1:{unused_port()}/nobody-listens"
    async with Emulator(api_key=KEY, speed=0) as emu:
        async with AsyncWaveSpeed(api_key=KEY, base_url=emu.base_url) as client:
            await client.submit_text_to_video("a fox", webhook=url)
        emu.advance(30)
        with anyio.fail_after(5):
            await emu.wait_for(lambda: len(emu.webhooks.deliveries) == 1)
        failed = emu.webhooks.deliveries[0]
        assert failed.status is None
        assert failed.error
        assert emu.webhooks.pending == 1  # the retry is queued; close() must not hang on it


async def test_deliveries_that_beat_the_submit_answer_still_resolve_their_futures() -> None:
    receiver = WebhookReceiver(reconcile_schedule=NO_RECONCILIATION)
    runner, origin = await serve(receiver.aiohttp_app("/hook"))
    try:
        async with (
            Emulator(api_key=KEY, speed=0, durations={"demo/instant": 0}) as emu,
            AsyncWaveSpeed(api_key=KEY, base_url=emu.base_url, webhooks=receiver) as client,
        ):
            receiver.set_secret(await client.webhook_secret())
            futures = await asyncio.gather(
                *(
                    client.submit("demo/instant", {"prompt": str(i)}, webhook=f"{origin}/hook")
                    for i in range(20)
                )
            )
            with anyio.fail_after(5):
                results = await asyncio.gather(*futures)
    finally:
        await runner.cleanup()
    assert all(result.status is Status.COMPLETED for result in results)
    assert receiver.accepted == 20


async def test_the_receiver_served_as_a_plain_aiohttp_handler_works_too() -> None:
    receiver = receiver_at(time.time())
    app = web.Application()
    app.router.add_post("/wavespeed", receiver.aiohttp_handler)
    runner, origin = await serve(app)
    try:
        now = int(time.time())
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"{origin}/wavespeed", data=BODY, headers=signed_headers(timestamp=now)
            ) as answer:
                assert (answer.status, await answer.text()) == (200, "ok")
            async with session.post(f"{origin}/wavespeed", data=BODY) as answer:
                assert answer.status == 400
    finally:
        await runner.cleanup()


# --- the acceptance figure ------------------------------------------------------------


@pytest.mark.parametrize(
    "reconcile", [PollSchedule(first_delay=0.05, min_interval=3600, max_interval=3600, jitter=0)]
)
async def test_200_webhook_predictions_take_at_most_one_reconciliation_poll_each(
    stack: Stack,
) -> None:
    futures = await asyncio.gather(*(stack.submit(f"fox {i}") for i in range(200)))
    resolved: dict[str, float] = {}

    async def wait(future: PredictionFuture) -> None:
        await future
        resolved[future.id] = time.monotonic()

    with anyio.fail_after(15):
        async with anyio.create_task_group() as group:
            for future in futures:
                group.start_soon(wait, future)
            # Each future makes its one early reconciliation check while the clock is frozen...
            await stack.emu.wait_for(lambda: stack.result_gets() >= 200)
            stack.emu.advance(30)  # ...then every task ends and is delivered.
    polls = [stack.result_gets(future.id) for future in futures]
    assert max(polls) <= 1
    assert len(stack.emu.webhooks.acknowledged()) == 200
    sent = {d.prediction_id: d.sent for d in stack.emu.webhooks.deliveries}
    latencies = sorted(resolved[id_] - sent[id_] for id_ in resolved)
    # Deliveries, not polls, finished them (the next check was an hour away): in seconds, on
    # however loaded a machine (well under one on an idle one; 200 deliveries, one by one).
    assert statistics.median(latencies) < 10.0
