"""Copying a prediction's outputs from the platform's URLs into an object store.

Each output streams from its URL (fetched without the API key, as every output download is)
into ``{prefix}{id}-{index}{suffix}``; the suffix comes from the first bytes, as a local
download's does. The object's metadata records the prediction id, the model and the output
index; its content type is the output's.
"""

from __future__ import annotations

import mimetypes
from collections.abc import AsyncIterable, AsyncIterator
from urllib.parse import urlsplit

from .._http import files as _files
from .._wire.models import Prediction
from .._wire.protocol import check_prediction_id
from ..errors import WaveSpeedError
from .store import Store, StoredObject

__all__ = ["store_outputs"]

_HEAD = 16  # bytes enough to tell the type (as _files sniffs it)


async def store_outputs(
    open_output: _files.OpenOutput,
    prediction: Prediction,
    store: Store,
    *,
    max_bytes: int,
    timeout: float,
) -> list[StoredObject]:
    """Copy every output of ``prediction`` into ``store``; what was stored, in output order.

    A failure raises (outputs stored before it stay); no partial object is left by it.
    """
    check_prediction_id(prediction.id)  # the id becomes part of a key: no separators in it
    stored = []
    for index, output in enumerate(prediction.outputs):
        stem = f"{prediction.id}-{index}"
        metadata = _metadata(prediction, index)
        try:
            if _files.is_inline(output):
                data, declared = _files.decode_output(output, stem, max_bytes)
                suffix = _files.output_suffix(data[:_HEAD], declared, "")
                attributes = {**metadata, "Content-Type": _content_type(declared, suffix)}
                stored.append(
                    await store.put_bytes(
                        store.destination.key(stem + suffix),
                        data,
                        attributes=attributes,
                        prediction_id=prediction.id,
                    )
                )
            else:
                stored.append(
                    await _copy_url(
                        open_output, prediction, index, output, store, metadata, max_bytes, timeout
                    )
                )
        except WaveSpeedError as exc:
            exc.prediction_id = exc.prediction_id or prediction.id
            raise
    return stored


async def _copy_url(
    open_output: _files.OpenOutput,
    prediction: Prediction,
    index: int,
    output: str,
    store: Store,
    metadata: dict[str, str],
    max_bytes: int,
    timeout: float,
) -> StoredObject:
    url, shown = _files.fetchable(output, index)
    async with open_output(url, shown, timeout=timeout) as opened:
        _files.check_output(opened, prediction, index, shown, max_bytes)
        chunks = _capped(opened.chunks, max_bytes, shown)
        head = await _read_head(chunks)
        suffix = _files.output_suffix(head, opened.content_type, urlsplit(url).path)
        attributes = {**metadata, "Content-Type": _content_type(opened.content_type, suffix)}
        return await store.put(
            store.destination.key(f"{prediction.id}-{index}{suffix}"),
            _prepend(head, chunks),
            attributes=attributes,
            expected_size=opened.content_length,
            prediction_id=prediction.id,
        )


def _metadata(prediction: Prediction, index: int) -> dict[str, str]:
    metadata = {"prediction-id": prediction.id, "output-index": str(index)}
    if prediction.model and prediction.model.isascii():  # header values are ASCII
        metadata["model"] = prediction.model
    return metadata


def _content_type(declared: str, suffix: str) -> str:
    """The type to store: the bytes' (from the suffix they earned), else the declared one."""
    guessed = mimetypes.guess_type(f"x{suffix}")[0] if suffix != ".bin" else None
    bare = declared.split(";", 1)[0].strip().lower()
    return guessed or bare or "application/octet-stream"


async def _read_head(chunks: AsyncIterator[bytes]) -> bytes:
    """The first chunks, until there are enough bytes to tell the type (or the stream ends)."""
    head = b""
    async for chunk in chunks:
        head += chunk
        if len(head) >= _HEAD:
            break
    return head


async def _prepend(head: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if head:
        yield head
    async for chunk in rest:
        yield chunk


async def _capped(chunks: AsyncIterable[bytes], max_bytes: int, shown: str) -> AsyncIterator[bytes]:
    received = 0
    async for chunk in chunks:
        received += len(chunk)
        if received > max_bytes:
            raise WaveSpeedError(f"download of {shown} exceeds {max_bytes} bytes")
        yield chunk
