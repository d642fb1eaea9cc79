"""Keeping outputs: into a local folder, or streamed into an object store, once, whole, verified.

:class:`Storage` is what a client holds: the :class:`StorageOptions` and one store per
bucket (each with its own connection pool, reused by every copy). :meth:`Storage.save` is
``download``'s body: a local folder gets today's atomic files (``list[Path]``), an object
store URL gets the outputs copied once (see :mod:`.once`) and their URLs (``list[str]``).
``obstore`` (the ``storage`` extra) is imported only when a store is used.
"""

from __future__ import annotations

import errno
import os
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Protocol

import anyio

from .._coordination import Coordinator
from .._http import files as _files
from .._http.answers import Output
from .._wire.models import Prediction
from ..errors import ConfigurationError, StorageAccessDenied, StorageError, WaveSpeedError
from .once import copy_key, copy_once
from .store import StorageOptions, Store, StoredObject, open_store
from .url import LocalDestination, StoreDestination, is_store_url, parse_destination

__all__ = [
    "OutputSource",
    "Storage",
    "StorageOptions",
    "StoredObject",
    "is_store_url",
    "parse_destination",
]

_READ_ONLY = (errno.EACCES, errno.EPERM, errno.EROFS)
_SETTLE = 0.05  # seconds: obstore's threads let go of Python objects (see Storage.aclose)


class OutputSource(Protocol):
    """Where outputs come from, and what shares the claims: the client's HTTP session."""

    @property
    def coordinator(self) -> Coordinator:
        """Shares the copy claims with other workers."""
        ...

    def output(
        self, url: str, shown: str, *, timeout: float
    ) -> AbstractAsyncContextManager[Output]:
        """Open an output URL for streaming (without the API key)."""
        ...

    async def start(self) -> None:
        """Start the coordinator (once)."""
        ...


class Storage:
    """The object stores of one client, opened on first use, and how to reach them."""

    def __init__(self, options: StorageOptions | None = None) -> None:
        self.options = options or StorageOptions()
        self._stores: dict[tuple[str, str], Store] = {}

    def __repr__(self) -> str:
        return f"Storage(stores={len(self._stores)})"

    async def aclose(self) -> None:
        """Drop the stores and their connection pools, and let ``obstore`` finish with them.

        ``obstore``'s runtime threads release what they hold of Python objects shortly after
        an upload returns; if the interpreter is being torn down by then, the process aborts
        (SIGABRT at exit, about one run in four without this pause). A short pause while the
        interpreter is whole lets them finish; it is taken only when a store was used.
        """
        if self._stores:
            self._stores.clear()
            await anyio.sleep(_SETTLE)

    def store(self, destination: StoreDestination) -> Store:
        """The store of ``destination``'s bucket (prefixes share it)."""
        name = (destination.scheme, destination.bucket)
        known = self._stores.get(name)
        if known is None:
            _require_obstore(destination.url)
            known = self._stores[name] = open_store(destination, self.options)
        return known.at(destination)

    async def check(self, dest: str | os.PathLike[str], *, field: str = "out") -> None:
        """Check ``dest`` before paying for a task: its form, credentials, and the bucket.

        A local folder passes (it is made when the outputs are written). A store is asked
        for one listing of the prefix: a missing bucket or refused credentials raise here.
        """
        destination = parse_destination(dest, field=field)
        if isinstance(destination, StoreDestination):
            await self.store(destination).check()

    async def save(
        self,
        source: OutputSource,
        prediction: Prediction,
        dest: str | os.PathLike[str],
        *,
        max_bytes: int,
        timeout: float,
    ) -> list[Path] | list[str]:
        """Keep every output of a completed ``prediction`` at ``dest``; where each now lives.

        Bad destinations raise :class:`InvalidInput` before anything is fetched.
        """
        destination = parse_destination(dest)
        _files.check_finished(prediction)
        if isinstance(destination, LocalDestination):
            return await _save_locally(source.output, prediction, destination, max_bytes, timeout)
        store = self.store(destination)
        if not prediction.outputs:
            return []
        from .copy import store_outputs

        async def copy() -> list[str]:
            stored = await store_outputs(
                source.output, prediction, store, max_bytes=max_bytes, timeout=timeout
            )
            return [item.url for item in stored]

        await source.start()  # the coordinator, for the claim
        key = copy_key(destination.url, prediction.id)
        return await copy_once(source.coordinator, key, copy, timeout=timeout)


async def _save_locally(
    open_output: _files.OpenOutput,
    prediction: Prediction,
    destination: LocalDestination,
    max_bytes: int,
    timeout: float,
) -> list[Path]:
    failure: WaveSpeedError | None = None
    try:
        return await _files.download_outputs(
            open_output, prediction, destination.directory, max_bytes=max_bytes, timeout=timeout
        )
    except OSError as exc:  # the folder cannot be made or written
        kind = StorageAccessDenied if exc.errno in _READ_ONLY else StorageError
        shown = str(destination.directory)
        reason = exc.strerror or type(exc).__name__
        failure = kind(f"{shown}: {reason}", destination=shown, prediction_id=prediction.id)
    raise failure


def _require_obstore(destination: str) -> None:
    try:
        import obstore  # noqa: F401
    except ImportError:
        raise ConfigurationError(
            f"writing to {destination} needs obstore: pip install obstore (the storage extra)"
        ) from None
