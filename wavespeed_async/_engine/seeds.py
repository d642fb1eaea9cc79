"""What the seed models' doors need beyond a payload model: an edit's image, a call's deadline."""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Awaitable, Callable

import attrs

from .._http import files as _files
from .._wire.models import ImageEdit

__all__ = ["Deadline", "edit_payload"]

# Stands in for a local image while the other fields of an edit are checked, before uploading.
_UPLOAD_PENDING = "upload-pending"


async def edit_payload(
    upload: Callable[[_files.Media], Awaitable[str]],
    prompt: str,
    *,
    image: str | os.PathLike[str] | bytes,
    size: tuple[int, int] | str,
    seed: int,
    enable_base64_output: bool,
    enable_sync_mode: bool,
    inline: bool,
) -> ImageEdit:
    """The checked :class:`ImageEdit` payload; a local image is uploaded with ``upload``.

    Every other field is checked before uploading: a bad prompt must not cost a request.
    """
    source = await _files.image_input(image)
    local = source if isinstance(source, _files.Media) else None
    payload = ImageEdit(
        prompt,
        image=_UPLOAD_PENDING if local is not None else str(source),
        size=size,  # the model's converter also accepts "W*H"
        seed=seed,
        enable_base64_output=enable_base64_output,
        enable_sync_mode=enable_sync_mode,
    )
    if local is not None:
        url = local.data_uri() if inline else await upload(local)
        payload = attrs.evolve(payload, image=url)
    return payload


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
