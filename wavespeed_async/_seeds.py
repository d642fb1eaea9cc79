"""The two seed models' methods: Dreamina V3.0 Pro text-to-video and Dreamina V3.0 edit."""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from . import _files
from ._models import ImageEdit, Prediction, TextToVideo
from ._polling import PollSchedule

if TYPE_CHECKING:
    from .future import PredictionFuture

__all__ = ["Deadline", "SeedModels"]

# Stands in for a local image while the other fields of an edit are checked, before uploading.
_UPLOAD_PENDING = "upload-pending"


class _Client(Protocol):
    """What the seed methods use of the client they are mixed into."""

    wait_timeout: float

    async def submit(
        self,
        model: str,
        payload: Mapping[str, Any] | Any,
        *,
        webhook: str | None = ...,
        poll_schedule: PollSchedule | None = ...,
        timeout: float | None = ...,
        idempotency_key: str | None = ...,
    ) -> PredictionFuture: ...

    async def run(
        self,
        model: str,
        payload: Mapping[str, Any] | Any,
        *,
        timeout: float | None = ...,
        webhook: str | None = ...,
        poll_schedule: PollSchedule | None = ...,
        idempotency_key: str | None = ...,
    ) -> Prediction: ...

    async def _upload(self, media: _files.Media) -> str: ...

    async def _edit_payload(
        self,
        prompt: str,
        image: str | os.PathLike[str] | bytes,
        size: tuple[int, int] | str,
        seed: int,
        enable_base64_output: bool,
        enable_sync_mode: bool,
        inline: bool,
    ) -> ImageEdit: ...


class SeedModels:
    """Typed doors onto ``submit``/``run`` for the two models the project started from."""

    async def submit_text_to_video(
        self: _Client,
        prompt: str,
        *,
        aspect_ratio: str = "16:9",
        seed: int = -1,
        webhook: str | None = None,
        poll_schedule: PollSchedule | None = None,
        idempotency_key: str | None = None,
    ) -> PredictionFuture:
        """Submit Dreamina V3.0 Pro text-to-video (1080p MP4); see :class:`TextToVideo`."""
        payload = TextToVideo(prompt, aspect_ratio=aspect_ratio, seed=seed)
        return await self.submit(
            payload.model_id,
            payload,
            webhook=webhook,
            poll_schedule=poll_schedule,
            idempotency_key=idempotency_key,
        )

    async def text_to_video(
        self: _Client,
        prompt: str,
        *,
        aspect_ratio: str = "16:9",
        seed: int = -1,
        timeout: float | None = None,
        webhook: str | None = None,
        poll_schedule: PollSchedule | None = None,
        idempotency_key: str | None = None,
    ) -> Prediction:
        """Generate a video and wait for it; ``outputs`` holds the MP4 URL(s).

        ``timeout`` bounds the whole call, the submit included (default: ``wait_timeout``).
        """
        payload = TextToVideo(prompt, aspect_ratio=aspect_ratio, seed=seed)
        return await self.run(
            payload.model_id,
            payload,
            timeout=timeout,
            webhook=webhook,
            poll_schedule=poll_schedule,
            idempotency_key=idempotency_key,
        )

    async def submit_edit_image(
        self: _Client,
        prompt: str,
        *,
        image: str | os.PathLike[str] | bytes,
        size: tuple[int, int] | str = (1328, 1328),
        seed: int = -1,
        enable_base64_output: bool = False,
        enable_sync_mode: bool = False,
        inline: bool = False,
        webhook: str | None = None,
        poll_schedule: PollSchedule | None = None,
        idempotency_key: str | None = None,
    ) -> PredictionFuture:
        """Submit Dreamina V3.0 image edit; see :class:`ImageEdit` for the limits.

        ``image`` is an http(s) URL, a ``data:image/...;base64,`` URI or bare base64 text, a
        local path (``str`` or ``Path``) or ``bytes`` of a PNG, JPEG, WebP or GIF image. A
        local image is uploaded first (:meth:`upload`), or sent inline as a data URI with
        ``inline=True``. Every argument is checked before anything is sent.
        """
        payload = await self._edit_payload(
            prompt, image, size, seed, enable_base64_output, enable_sync_mode, inline
        )
        return await self.submit(
            payload.model_id,
            payload,
            webhook=webhook,
            poll_schedule=poll_schedule,
            idempotency_key=idempotency_key,
        )

    async def _edit_payload(
        self: _Client,
        prompt: str,
        image: str | os.PathLike[str] | bytes,
        size: tuple[int, int] | str,
        seed: int,
        enable_base64_output: bool,
        enable_sync_mode: bool,
        inline: bool,
    ) -> ImageEdit:
        source = await _files.image_input(image)
        local = source if isinstance(source, _files.Media) else None
        payload = ImageEdit(
            prompt,
            # Check every other field before uploading: a bad prompt must not cost a request.
            image=_UPLOAD_PENDING if local is not None else str(source),
            size=size,  # the model's converter also accepts "W*H"
            seed=seed,
            enable_base64_output=enable_base64_output,
            enable_sync_mode=enable_sync_mode,
        )
        if local is not None:
            url = local.data_uri() if inline else await self._upload(local)
            payload = attrs.evolve(payload, image=url)
        return payload

    async def edit_image(
        self: _Client,
        prompt: str,
        *,
        image: str | os.PathLike[str] | bytes,
        size: tuple[int, int] | str = (1328, 1328),
        seed: int = -1,
        enable_base64_output: bool = False,
        enable_sync_mode: bool = False,
        inline: bool = False,
        timeout: float | None = None,
        webhook: str | None = None,
        poll_schedule: PollSchedule | None = None,
        idempotency_key: str | None = None,
    ) -> Prediction:
        """Edit an image and wait for it; ``outputs`` holds URLs (or base64 strings).

        ``image`` takes what :meth:`submit_edit_image` takes: a URL, a data URI or base64, a
        local path or bytes (uploaded, or inlined with ``inline=True``). ``timeout`` bounds the
        whole call, the upload and the submit included (default: ``wait_timeout``).
        """
        deadline = Deadline(self.wait_timeout if timeout is None else timeout)
        payload = await self._edit_payload(
            prompt, image, size, seed, enable_base64_output, enable_sync_mode, inline
        )
        return await self.run(
            payload.model_id,
            payload,
            timeout=deadline.left(),
            webhook=webhook,
            poll_schedule=poll_schedule,
            idempotency_key=idempotency_key,
        )


class Deadline:
    """A call's deadline, as the seconds left at each step."""

    __slots__ = ("_at",)

    def __init__(self, seconds: float) -> None:
        self._at = math.inf if math.isinf(seconds) else asyncio.get_running_loop().time() + seconds

    def left(self) -> float:
        """Seconds left (never negative; ``inf`` without a deadline)."""
        if math.isinf(self._at):
            return math.inf
        return max(0.0, self._at - asyncio.get_running_loop().time())
