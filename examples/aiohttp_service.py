"""An aiohttp service that starts generations and learns their outcome by webhook.

    POST /generations {"prompt": "..."} -> 202 {"id", "status", "outputs", "error"}
         (an ``Idempotency-Key`` header makes a retried request return the same generation)
    GET  /generations/{id}              -> 200 {"id", "status", "outputs", "error"}
    POST /webhooks/wavespeed            <- the platform's signed deliveries

Each generation is submitted with ``webhook=<PUBLIC_URL>/webhooks/wavespeed``. The receiver
verifies the delivery and finishes the generation's future at once; a watcher task awaits
every future, so that a lost delivery is still caught by the slow reconciliation poll. One
process; for several, see ``fastapi_service.py`` (a shared ``RedisCoordinator``).

    WAVESPEED_API_KEY=... python examples/aiohttp_service.py --public-url https://me.example

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
from typing import Any

from aiohttp import web

from wavespeed_async import (
    AsyncWaveSpeed,
    IdempotencyConflict,
    InvalidInput,
    Prediction,
    PredictionFuture,
    WaveSpeedError,
    WebhookReceiver,
)

log = logging.getLogger("aiohttp_service")
WEBHOOK_PATH = "/webhooks/wavespeed"


class Service:
    """The service's state: one client, one receiver, the generations started so far."""

    def __init__(self, public_url: str) -> None:
        self.webhook_url = public_url.rstrip("/") + WEBHOOK_PATH
        self.receiver = WebhookReceiver(on_prediction=self.report)
        self.client = AsyncWaveSpeed(webhooks=self.receiver)  # key and base URL from the env
        self.generations: dict[str, PredictionFuture] = {}
        self.watchers: set[asyncio.Task[None]] = set()

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application()
        app.router.add_post("/generations", self.generate)
        app.router.add_get("/generations/{id}", self.generation)
        app.router.add_get("/health", self.health)
        app.router.add_post(WEBHOOK_PATH, self.receiver.aiohttp_handler)
        app.cleanup_ctx.append(self.lifespan)
        return app

    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        """Open the client and fetch the signing secret; on exit, stop everything."""
        async with self.client:
            self.receiver.set_secret(await self.client.webhook_secret())
            yield
            for watcher in self.watchers:
                watcher.cancel()
            await asyncio.gather(*self.watchers, return_exceptions=True)
            await self.receiver.aclose()

    def report(self, prediction: Prediction) -> None:
        """The receiver's callback: every verified delivery, once."""
        log.info("webhook: prediction %s is %s", prediction.id, prediction.raw_status)

    async def generate(self, request: web.Request) -> web.Response:
        """``POST /generations``: start a video; its outcome arrives by webhook."""
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "the body must be JSON"}, status=400)
        prompt = body.get("prompt") if isinstance(body, dict) else None
        try:
            future = await self.client.submit_text_to_video(
                prompt,
                webhook=self.webhook_url,
                idempotency_key=request.headers.get("Idempotency-Key"),
            )
        except InvalidInput as exc:
            return web.json_response({"error": str(exc)}, status=400)
        except IdempotencyConflict as exc:  # the key was used for another prompt
            return web.json_response({"error": str(exc)}, status=409)
        except WaveSpeedError as exc:
            return web.json_response({"error": str(exc)}, status=502)
        self.generations[future.id] = future
        watcher = asyncio.get_running_loop().create_task(self.watch(future))
        self.watchers.add(watcher)
        watcher.add_done_callback(self.watchers.discard)
        return web.json_response(describe(future), status=202)

    async def watch(self, future: PredictionFuture) -> None:
        """Await a generation: the delivery ends this at once, else reconciliation does."""
        try:
            prediction = await future
        except WaveSpeedError as exc:  # failed, timed out: the state stays on the future
            log.info("generation %s ended: %s", future.id, exc)
        else:
            log.info("generation %s completed: %s", future.id, prediction.outputs)

    async def generation(self, request: web.Request) -> web.Response:
        """``GET /generations/{id}``: the last state known, as the webhook left it."""
        future = self.generations.get(request.match_info["id"])
        if future is None:
            return web.json_response({"error": "no such generation"}, status=404)
        return web.json_response(describe(future))

    async def health(self, request: web.Request) -> web.Response:
        """``GET /health``: up, and holding the signing secret."""
        return web.json_response({"ok": True})


def describe(future: PredictionFuture) -> dict[str, Any]:
    """A generation as JSON."""
    prediction = future.prediction
    return {
        "id": future.id,
        "status": prediction.raw_status if prediction else "unknown",
        "outputs": list(prediction.outputs) if prediction else [],
        "error": prediction.error if prediction else "",
    }


def main() -> None:
    """Run the service until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    parser.add_argument("--public-url", default=os.environ.get("PUBLIC_URL"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    service = Service(args.public_url or f"http://{args.host}:{args.port}")
    web.run_app(service.app(), host=args.host, port=args.port, access_log=None)


if __name__ == "__main__":
    main()
