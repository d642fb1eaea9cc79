"""The blocking facade, driven from plain synchronous code (the emulator runs in its own thread)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import gc
import inspect
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

from wavespeed_async import (
    AsyncWaveSpeed,
    ClientClosed,
    ConfigurationError,
    InvalidInput,
    Prediction,
    PredictionFailed,
    PredictionTimeout,
    Status,
    TextToVideo,
    WaveSpeed,
)
from wavespeed_async.emulator import Emulator
from wavespeed_async.emulator._media import png
from wavespeed_async.sync import SyncPredictionFuture

from .support import FAST, SECRET_KEY

PNG = png(4, 4, (10, 200, 10))


@attrs.define
class Running:
    """An emulator serving from its own event loop thread."""

    emu: Emulator
    portal: BlockingPortal

    def client(self, **kwargs: Any) -> WaveSpeed:
        return WaveSpeed(SECRET_KEY, self.emu.base_url, poll_schedule=FAST, **kwargs)


def running(speed: float) -> Iterator[Running]:
    with start_blocking_portal() as portal:
        emu = Emulator(speed=speed)
        with portal.wrap_async_context_manager(emu):
            yield Running(emu, portal)


@pytest.fixture
def fast() -> Iterator[Running]:
    yield from running(1000)


@pytest.fixture
def frozen_facade() -> Iterator[Running]:
    yield from running(0)


def test_a_script_generates_and_downloads_without_async(fast: Running, tmp_path: Path) -> None:
    with fast.client() as client:
        video = client.text_to_video("a red fox running through snow", aspect_ratio="9:16")
        [path] = client.download(video, tmp_path)
        image = client.edit_image("make it snow", image=PNG, size=(512, 512))
    assert video.status is Status.COMPLETED
    assert path.name == f"{video.id}-0.mp4"
    assert path.read_bytes()[4:8] == b"ftyp"
    assert image.status is Status.COMPLETED
    assert any(r.method == "PUT" for r in fast.emu.requests)  # the bytes were uploaded
    assert fast.emu.auth_leaks() == []


def test_submit_returns_a_blocking_future(fast: Running, tmp_path: Path) -> None:
    with fast.client() as client:
        url = client.upload(PNG)
        future = client.submit_edit_image("make it snow", image=url)
        assert isinstance(future, SyncPredictionFuture)
        assert future.id in fast.emu.tasks
        image = future.result()
        assert future.done()
        assert future.status is Status.COMPLETED
        assert future.prediction == image
        assert future.refresh().status is Status.COMPLETED
        [path] = future.download(tmp_path)
        resumed = client.prediction(future.id)
        assert resumed.result().outputs == image.outputs
        assert client.get_prediction(future.id).id == future.id
        assert future.id in [p.id for p in client.recent_predictions()]
        assert client.webhook_secret().startswith("whsec_")
        other = client.submit("wavespeed-ai/flux-dev", {"prompt": "a lighthouse"})
        assert other.result().status is Status.COMPLETED
        assert client.run("wavespeed-ai/flux-dev", {"prompt": "an owl"}).outputs
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_facade_works_inside_a_running_event_loop(fast: Running) -> None:
    # A notebook cell: the calling thread already runs an asyncio loop, and calls block.
    async def cell() -> Prediction:
        with fast.client() as client:
            return client.edit_image("make it snow", image="https://example.com/in.png")

    image = asyncio.run(cell())
    assert image.status is Status.COMPLETED


def test_errors_surface_as_the_async_client_raises_them(frozen_facade: Running) -> None:
    with frozen_facade.client() as client:
        with pytest.raises(InvalidInput) as info:
            client.edit_image("make it snow", image=b"not an image")
        assert info.value.field == "image"
        assert frozen_facade.emu.requests == []
        future = client.submit_text_to_video("a fox")
        with pytest.raises(PredictionTimeout) as timeout:
            future.result(timeout=0.01)  # the clock is frozen_facade: the task cannot finish
        assert timeout.value.prediction_id == future.id
        frozen_facade.emu.advance(60)
        assert future.result().status is Status.COMPLETED


def test_cancel_stops_local_polling(frozen_facade: Running) -> None:
    with frozen_facade.client() as client:
        future = client.submit_text_to_video("a fox")
        future.cancel()
        with pytest.raises(concurrent.futures.CancelledError):
            future.result()
    assert frozen_facade.emu.tasks[future.id].status_at(0).raw == "created"  # still there remotely


class Interrupted(Exception):
    """Stands in for KeyboardInterrupt, which pytest would take as the user's."""


def interrupt(signum: int, frame: object) -> None:
    raise Interrupted


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs POSIX interval timers")
def test_an_interrupted_wait_stops_polling_in_the_loop_too(frozen_facade: Running) -> None:
    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        with frozen_facade.client() as client:
            future = client.submit_text_to_video("a fox")
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            with pytest.raises(Interrupted):
                future.result()  # blocks: the clock is frozen_facade
            engine = client._client.engine
            for _ in range(200):  # the cancellation reaches the loop thread soon after
                if not engine.watched:
                    break
                client._run(functools.partial(anyio.sleep, 0.001))
            assert engine.watched == 0
            frozen_facade.emu.advance(60)
            assert future.result().status is Status.COMPLETED  # and it can be awaited again
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_close_is_idempotent_and_stops_the_loop_thread(fast: Running) -> None:
    before = threading.active_count()
    client = fast.client()
    assert threading.active_count() == before + 1
    client.close()
    client.close()
    assert threading.active_count() == before
    with pytest.raises(ClientClosed, match="WaveSpeed client is closed"):
        client.text_to_video("a fox")
    assert "closed" in repr(client)
    assert SECRET_KEY not in repr(client)


def test_a_forgotten_facade_is_closed_when_collected(fast: Running) -> None:
    before = threading.active_count()
    client = fast.client()
    client.webhook_secret()  # the session exists now
    del client
    gc.collect()
    assert threading.active_count() == before


def test_bad_arguments_raise_before_a_thread_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WAVESPEED_API_KEY", raising=False)
    before = threading.active_count()
    with pytest.raises(ConfigurationError):
        WaveSpeed()
    with pytest.raises(TypeError):
        WaveSpeed("k", wait_timout=3)  # type: ignore[call-arg]
    assert threading.active_count() == before


# --- the same surface as AsyncWaveSpeed -----------------------------------------------------------

#: The async client's lifecycle methods and their blocking names.
LIFECYCLE = {"aclose": "close"}


def public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def parameters(signature: inspect.Signature) -> list[tuple[str, object, object]]:
    """What a caller relies on: names, kinds and defaults (a future's type may differ)."""
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


def test_every_public_method_of_the_async_client_has_a_blocking_twin() -> None:
    async_methods = public_methods(AsyncWaveSpeed)
    blocking = public_methods(WaveSpeed)
    expected = {LIFECYCLE.get(name, name) for name in async_methods}
    assert sorted(expected - set(blocking)) == [], "methods without a blocking twin"
    assert sorted(set(blocking) - expected) == [], "blocking methods the async client lacks"
    for name, signature in async_methods.items():
        twin = blocking[LIFECYCLE.get(name, name)]
        assert parameters(twin) == parameters(signature), f"WaveSpeed.{name} differs"


def test_the_blocking_constructor_takes_exactly_the_async_clients_parameters() -> None:
    # Annotations too: the facade's signature is typed, not **options.
    assert inspect.signature(WaveSpeed.__init__) == inspect.signature(AsyncWaveSpeed.__init__)


def test_wrong_arguments_name_the_blocking_client(fast: Running) -> None:
    with pytest.raises(TypeError, match=r"^WaveSpeed\.__init__\(\) got an unexpected"):
        WaveSpeed("k", wait_timout=3)  # type: ignore[call-arg]
    with fast.client() as client:
        with pytest.raises(TypeError, match=r"^WaveSpeed\.text_to_video\(\) got an unexpected"):
            client.text_to_video("a fox", aspect="9:16")  # type: ignore[call-arg]
        with pytest.raises(TypeError, match=r"^WaveSpeed\.submit\(\) missing"):
            client.submit("wavespeed-ai/flux-dev")  # type: ignore[call-arg]
        assert fast.emu.requests == []  # refused before the loop sent anything
        future = client.submit_text_to_video("a fox")
        assert repr(future).startswith(f"<SyncPredictionFuture {future.id} ")


def test_map_returns_the_predictions_in_input_order(fast: Running) -> None:
    prompts = [f"a fox, take {n}" for n in range(5)]
    with fast.client() as client:
        videos = client.map([TextToVideo(prompt) for prompt in prompts], concurrency=2)
    assert [video.status for video in videos] == [Status.COMPLETED] * 5
    assert [fast.emu.tasks[video.id].input["prompt"] for video in videos] == prompts


def test_as_completed_is_a_plain_iterator_over_blocking_futures(frozen_facade: Running) -> None:
    with frozen_facade.client() as client:
        futures = [client.submit_text_to_video(f"a fox, take {n}") for n in range(3)]
        finished = client.as_completed(futures)
        assert isinstance(finished, Iterator)
        frozen_facade.emu.advance(60)
        assert sorted(video.id for video in finished) == sorted(f.id for f in futures)


def test_as_completed_raises_a_failure_unless_asked_to_yield_it(fast: Running) -> None:
    payloads = [TextToVideo("a fox"), TextToVideo("no [fail]")]
    with fast.client() as client:
        outcomes = list(client.as_completed(payloads, return_exceptions=True))
        assert sorted(type(outcome).__name__ for outcome in outcomes) == [
            "Prediction",
            "PredictionFailed",
        ]
        with pytest.raises(PredictionFailed):
            list(client.as_completed([TextToVideo("no [fail]")]))
        assert client.text_to_video("still usable").status is Status.COMPLETED
