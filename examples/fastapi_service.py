"""A FastAPI service that starts generations and learns their outcome by webhook.

    POST /generate {"prompt": "..."}  -> 202 {"id", "status", "outputs", "error"}
    GET  /generations/{id}            -> 200 {"id", "status", "outputs", "error"}
    POST /webhooks/wavespeed          <- the platform's signed deliveries

The receiver is a plain ASGI app, routed to with ``app.add_route(path, receiver,
methods=["POST"])``: FastAPI does not parse the body first, so the signature is checked on
the exact bytes sent. A watcher task awaits every generation, so that a lost delivery is
still caught by the slow reconciliation poll. Needs ``pip install fastapi uvicorn``.

    WAVESPEED_API_KEY=... python examples/fastapi_service.py --public-url https://me.example

Settings (arguments, or environment variables): ``--host`` / ``HOST`` (127.0.0.1),
``--port`` / ``PORT`` (8080), ``--public-url`` / ``PUBLIC_URL`` (the address the platform
reaches this service at; default ``http://HOST:PORT``). ``WAVESPEED_API_KEY`` and
``WAVESPEED_BASE_URL`` (an emulator, say) configure the client.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from wavespeed_async import (
    AsyncWaveSpeed,
    InvalidInput,
    Prediction,
    PredictionFuture,
    WaveSpeedError,
    WebhookReceiver,
)

log = logging.getLogger("fastapi_service")
WEBHOOK_PATH = "/webhooks/wavespeed"


class GenerateRequest(BaseModel):
    """The body of ``POST /generate``."""

    prompt: str


def report(prediction: Prediction) -> None:
    """The receiver's callback: every verified delivery, once."""
    log.info("webhook: prediction %s is %s", prediction.id, prediction.raw_status)


def describe(future: PredictionFuture) -> dict[str, Any]:
    """A generation as JSON."""
    prediction = future.prediction
    return {
        "id": future.id,
        "status": prediction.raw_status if prediction else "unknown",
        "outputs": list(prediction.outputs) if prediction else [],
        "error": prediction.error if prediction else "",
    }


async def watch(future: PredictionFuture) -> None:
    """Await a generation: the delivery ends this at once, else reconciliation does."""
    try:
        prediction = await future
    except WaveSpeedError as exc:  # failed, timed out: the state stays on the future
        log.info("generation %s ended: %s", future.id, exc)
    else:
        log.info("generation %s completed: %s", future.id, prediction.outputs)


def create_app(public_url: str) -> FastAPI:
    """The application; ``public_url`` is where the platform reaches it."""
    webhook_url = public_url.rstrip("/") + WEBHOOK_PATH
    receiver = WebhookReceiver(on_prediction=report)
    client = AsyncWaveSpeed(webhooks=receiver)  # key and base URL from the environment
    generations: dict[str, PredictionFuture] = {}
    watchers: set[asyncio.Task[None]] = set()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with client:
            receiver.set_secret(await client.webhook_secret())
            yield
            for watcher in watchers:
                watcher.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
            await receiver.aclose()

    app = FastAPI(lifespan=lifespan)
    app.add_route(WEBHOOK_PATH, receiver, methods=["POST"])  # an ASGI app, not a view

    @app.post("/generate", status_code=202)
    async def generate(body: GenerateRequest) -> dict[str, Any]:
        try:
            future = await client.submit_text_to_video(body.prompt, webhook=webhook_url)
        except InvalidInput as exc:
            raise HTTPException(400, str(exc)) from None
        except WaveSpeedError as exc:
            raise HTTPException(502, str(exc)) from None
        generations[future.id] = future
        watcher = asyncio.get_running_loop().create_task(watch(future))
        watchers.add(watcher)
        watcher.add_done_callback(watchers.discard)
        return describe(future)

    @app.get("/generations/{generation_id}")
    async def generation(generation_id: str) -> dict[str, Any]:
        future = generations.get(generation_id)
        if future is None:
            raise HTTPException(404, "no such generation")
        return describe(future)

    @app.get("/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    return app


def main() -> None:
    """Run the service with uvicorn until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    parser.add_argument("--public-url", default=os.environ.get("PUBLIC_URL"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    app = create_app(args.public_url or f"http://{args.host}:{args.port}")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
