r"""A FastAPI service on many workers: generations started here, finished by webhook.

    POST /generations {"prompt": "..."}   -> 202 {"id", "status", "outputs", "error", ...}
         (an ``Idempotency-Key`` header makes a retried request return the same generation)
    GET  /generations/{id}                -> 200 the same answer, whichever worker serves it
    POST /webhooks/wavespeed              <- the platform's signed deliveries
    GET  /health                          -> 200 {"ok": true, "worker": <pid>}

Run it with uvicorn, as many workers as you like (``pip install fastapi uvicorn``):

    WAVESPEED_API_KEY=... PUBLIC_URL=https://me.example REDIS_URL=redis://localhost:6379/0 \
        uvicorn examples.fastapi_service:app --workers 4

With ``REDIS_URL`` every worker's client shares one ``RedisCoordinator``: account-wide
limits, idempotency keys, and webhook deliveries (a delivery reaching any worker finishes
the future of the worker that submitted it), and the generations' state lives in Redis, so
every worker answers ``GET`` alike. Without it, run one worker: the state is in memory.

Settings, all from the environment: ``WAVESPEED_API_KEY`` and ``WAVESPEED_BASE_URL`` (an
emulator, say) for the client; ``PUBLIC_URL``, the address the platform reaches this service
at (default ``http://HOST:PORT``); ``REDIS_URL`` and ``REDIS_NAMESPACE`` (``wavespeed``).
``python examples/fastapi_service.py`` runs one worker on ``HOST``:``PORT``.

Traces: with ``OTEL_EXPORTER_OTLP_ENDPOINT`` set (OpenTelemetry's own setting, as are
``OTEL_SERVICE_NAME`` and the rest), each worker exports its spans over OTLP/HTTP and every
request gets a server span, continuing the caller's ``traceparent``: a generation's span is
its child, even when its webhook delivery reaches another worker (``pip install
opentelemetry-sdk opentelemetry-exporter-otlp-proto-http opentelemetry-instrumentation-fastapi``).

The receiver is a plain ASGI app, routed to with ``app.add_route(path, receiver,
methods=["POST"])``: FastAPI does not parse the body first, so the signature is checked on
the exact bytes sent. A watcher task awaits every generation, so that a lost delivery is
still caught by the slow reconciliation poll.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI, Header, HTTPException, Response
from pydantic import BaseModel

from wavespeed_async import (
    AsyncWaveSpeed,
    CoordinatorUnavailable,
    IdempotencyConflict,
    InvalidInput,
    Prediction,
    PredictionFuture,
    WaveSpeedError,
    WebhookReceiver,
)

log = logging.getLogger("fastapi_service")
WEBHOOK_PATH = "/webhooks/wavespeed"
#: How long a generation's state is kept in Redis (seconds).
KEEP_FOR = 7 * 24 * 3600


def worker() -> str:
    """The id of the worker process, as the answers name it."""
    return str(os.getpid())


class GenerateRequest(BaseModel):
    """The body of ``POST /generations``."""

    prompt: str


def describe(prediction: Prediction) -> dict[str, Any]:
    """A generation's state as JSON."""
    return {
        "id": prediction.id,
        "status": prediction.raw_status,
        "outputs": list(prediction.outputs),
        "error": prediction.error,
    }


class Generations:
    """Every generation's state, as named fields: in Redis if ``redis_url``, else in memory.

    ``state`` is the last :func:`describe` known; ``submitted_by``, ``delivered_to`` and
    ``resolved_by`` the worker that submitted it, got its delivery, and saw its future end
    (at ``resolved_at``, Unix seconds).
    """

    def __init__(self, redis_url: str | None, namespace: str) -> None:
        self._namespace = namespace
        self._memory: dict[str, dict[str, str]] = {}
        self._redis: Any = None
        if redis_url:
            import redis.asyncio

            self._redis = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)

    async def note(self, generation_id: str, *, keep: bool = False, **fields: str) -> None:
        """Record ``fields``; with ``keep``, only those not recorded yet."""
        if self._redis is None:
            known = self._memory.setdefault(generation_id, {})
            known.update({k: v for k, v in fields.items() if not (keep and k in known)})
            return
        key = f"{self._namespace}:generation:{generation_id}"
        async with self._redis.pipeline(transaction=True) as pipe:
            for name, value in fields.items():
                (pipe.hsetnx if keep else pipe.hset)(key, name, value)
            pipe.expire(key, KEEP_FOR)
            await pipe.execute()

    async def read(self, generation_id: str) -> dict[str, Any] | None:
        """What is known of a generation, or ``None``."""
        if self._redis is None:
            fields = self._memory.get(generation_id)
        else:
            fields = await self._redis.hgetall(f"{self._namespace}:generation:{generation_id}")
        if not fields or "state" not in fields:
            return None
        others = {name: value for name, value in fields.items() if name != "state"}
        return {**json.loads(fields["state"]), **others}

    async def aclose(self) -> None:
        """Close the Redis connections."""
        if self._redis is not None:
            await self._redis.aclose()


def make_client(receiver: WebhookReceiver, redis_url: str | None, namespace: str) -> AsyncWaveSpeed:
    """The client: key and base URL from the environment, a shared coordinator with Redis."""
    if not redis_url:
        return AsyncWaveSpeed(webhooks=receiver)
    from wavespeed_async.redis import RedisCoordinator

    coordinator = RedisCoordinator(redis_url, namespace=namespace)
    return AsyncWaveSpeed(webhooks=receiver, coordinator=coordinator)


def traced(app: FastAPI) -> Callable[[], object]:
    """With ``OTEL_EXPORTER_OTLP_ENDPOINT`` set, export spans and trace every request.

    Returns what flushes the spans not exported yet (call it on the way out).
    """
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return lambda: None
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()  # its resource names OTEL_SERVICE_NAME
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)  # the client's spans go here too
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider)
    return provider.force_flush


def create_app() -> FastAPI:
    """The application, configured from the environment (see the module's docstring)."""
    default_url = f"http://{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8080')}"
    public_url = os.environ.get("PUBLIC_URL", default_url)
    webhook_url = public_url.rstrip("/") + WEBHOOK_PATH
    redis_url = os.environ.get("REDIS_URL") or None
    namespace = os.environ.get("REDIS_NAMESPACE", "wavespeed")
    generations = Generations(redis_url, namespace)
    watchers: set[asyncio.Task[None]] = set()

    async def delivered(prediction: Prediction) -> None:
        """The receiver's callback: every verified delivery, once, in the worker it reached."""
        log.info("webhook: prediction %s is %s", prediction.id, prediction.raw_status)
        await generations.note(
            prediction.id, state=json.dumps(describe(prediction)), delivered_to=worker()
        )

    async def watch(future: PredictionFuture) -> None:
        """Await a generation: its delivery ends this at once, else reconciliation does."""
        try:
            prediction = await future
        except WaveSpeedError as exc:  # failed, timed out: the state stays on the future
            log.info("generation %s ended: %s", future.id, exc)
            if future.prediction is None:
                return
            prediction = future.prediction
        log.info("generation %s is %s", future.id, prediction.raw_status)
        await generations.note(
            future.id,
            state=json.dumps(describe(prediction)),
            resolved_by=worker(),
            resolved_at=repr(time.time()),
        )

    receiver = WebhookReceiver(on_prediction=delivered)
    client = make_client(receiver, redis_url, namespace)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logging.basicConfig(level=logging.INFO, format="%(name)s[%(process)d]: %(message)s")
        async with client:
            receiver.set_secret(await client.webhook_secret())
            yield
            for watcher in watchers:
                watcher.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
            await receiver.aclose()
        await generations.aclose()
        flush()

    app = FastAPI(lifespan=lifespan)
    flush = traced(app)
    app.add_route(WEBHOOK_PATH, receiver, methods=["POST"])  # an ASGI app, not a view

    @app.post("/generations", status_code=202)
    async def generate(
        body: GenerateRequest,
        response: Response,
        idempotency_key: str | None = Header(default=None),
    ) -> dict[str, Any]:
        try:
            future = await client.submit_text_to_video(
                body.prompt, webhook=webhook_url, idempotency_key=idempotency_key
            )
        except InvalidInput as exc:
            raise HTTPException(400, str(exc)) from None
        except IdempotencyConflict as exc:
            raise HTTPException(409, str(exc)) from None
        except CoordinatorUnavailable as exc:  # not sent: safe to retry later
            raise HTTPException(503, str(exc)) from None
        except WaveSpeedError as exc:
            raise HTTPException(502, str(exc)) from None
        # A retry with the key may get a future on a task another worker submitted.
        known = future.prediction
        state = describe(known) if known else {"id": future.id, "status": "unknown"}
        await generations.note(future.id, keep=True, state=json.dumps(state), submitted_by=worker())
        watcher = asyncio.get_running_loop().create_task(watch(future))
        watchers.add(watcher)
        watcher.add_done_callback(watchers.discard)
        return await generation(future.id, response)

    @app.get("/generations/{generation_id}")
    async def generation(generation_id: str, response: Response) -> dict[str, Any]:
        known = await generations.read(generation_id)
        if known is None:
            raise HTTPException(404, "no such generation")
        response.headers["x-worker"] = worker()
        return known

    @app.get("/health")
    async def health(response: Response) -> dict[str, Any]:
        response.headers["x-worker"] = worker()
        return {"ok": True, "worker": worker()}

    return app


app = create_app()


def main() -> None:
    """Run one worker with uvicorn until interrupted (``HOST``, ``PORT``)."""
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8080"))
    uvicorn.run(app, host=host, port=port, log_level="warning")


if __name__ == "__main__":
    main()
