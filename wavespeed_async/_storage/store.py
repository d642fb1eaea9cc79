"""Writing a stream into an object store, whole or not at all, through ``obstore``.

The bytes arrive in chunks and leave in parts of ``part_size`` (a multipart upload; one PUT
when the whole output fits in a part), so memory holds a few parts whatever the file's size.
A failure before the upload completes aborts it: nothing appears under the final name. Once
complete, the object is checked: its size must be the bytes counted, and on S3 its ETag the
MD5 of the parts sent (what S3, MinIO and R2 report for an unencrypted object). A mismatch
removes the object and raises :class:`ChecksumMismatch`. Every part also carries its SHA-256,
which AWS verifies on receipt.

Errors of the store become the library's own, naming the destination URL and nothing else:
no credentials, no signed URLs, no chained exception from the layer below.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import attrs

from ..errors import (
    BucketNotFound,
    ChecksumMismatch,
    ConfigurationError,
    StorageAccessDenied,
    StorageCredentialsMissing,
    StorageError,
    WaveSpeedError,
)
from .url import StoreDestination

if TYPE_CHECKING:
    from obstore.store import ObjectStore

__all__ = ["PART_SIZE", "StorageOptions", "Store", "StoredObject", "open_store"]

#: S3's smallest part; a few of these in flight keep memory flat and the pipe full.
PART_SIZE = 5 * 1024 * 1024
_ETAG_MD5 = re.compile(r'"?([0-9a-f]{32})(?:-(\d+))?"?')
_CREDENTIAL_ENV = (
    ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
    ("AWS_WEB_IDENTITY_TOKEN_FILE",),
    ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",),
    ("AWS_CONTAINER_CREDENTIALS_FULL_URI",),
)


@attrs.frozen
class StorageOptions:
    """How to reach an object store, when the environment does not say (or says otherwise).

    Without options, everything comes from the cloud's standard environment: for S3
    ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``), ``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION`` and ``AWS_PROFILE`` (a
    profile needs ``boto3``); for GCS and Azure the variables their own tools read. An
    ``http://`` endpoint (MinIO, a local S3) is allowed as given.

    ``config`` passes further settings to ``obstore`` as they are (``S3Config``,
    ``GCSConfig``, ``AzureConfig`` keys). ``part_size`` and ``concurrency`` bound memory:
    about ``part_size * (concurrency + 1)`` bytes per copy. ``check_etag=False`` skips the
    ETag comparison, for buckets whose ETags are not MD5s (SSE-KMS and SSE-C encryption).
    A request that fails below HTTP or with a 5xx is retried ``max_retries`` times, for at
    most ``retry_timeout`` seconds.
    Credentials never appear in the repr.

    >>> StorageOptions(endpoint="http://127.0.0.1:9000", access_key_id="minio",
    ...                secret_access_key="minio123")
    StorageOptions(endpoint='http://127.0.0.1:9000', region=None, profile=None)
    """

    endpoint: str | None = None
    region: str | None = None
    access_key_id: str | None = attrs.field(default=None, repr=False)
    secret_access_key: str | None = attrs.field(default=None, repr=False)
    session_token: str | None = attrs.field(default=None, repr=False)
    profile: str | None = None
    config: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    part_size: int = attrs.field(default=PART_SIZE, repr=False)
    concurrency: int = attrs.field(default=4, repr=False)
    check_etag: bool = attrs.field(default=True, repr=False)
    max_retries: int = attrs.field(default=3, repr=False)
    retry_timeout: float = attrs.field(default=60.0, repr=False)

    def __attrs_post_init__(self) -> None:
        from ..errors import InvalidInput

        if self.part_size < PART_SIZE:
            raise InvalidInput("part_size", self.part_size, f"at least {PART_SIZE} (5 MiB)")
        if self.concurrency < 1:
            raise InvalidInput("concurrency", self.concurrency, "at least 1")


@attrs.frozen
class StoredObject:
    """An object written by :meth:`Store.put`: its URL, size and SHA-256 (hex)."""

    url: str
    size: int
    sha256: str


class _Digest:
    """The SHA-256 of the whole stream and the MD5 of each part, fed in a worker thread."""

    def __init__(self) -> None:
        self.sha256 = hashlib.sha256()
        self.part_md5s: list[bytes] = []
        self.size = 0

    def add(self, part: bytes | bytearray) -> None:
        self.sha256.update(part)
        self.part_md5s.append(hashlib.md5(part, usedforsecurity=False).digest())
        self.size += len(part)

    def etag(self, multipart: bool) -> str:
        """The ETag S3 gives an unencrypted object uploaded in these parts."""
        if not multipart:
            return self.part_md5s[0].hex()
        joined = hashlib.md5(b"".join(self.part_md5s), usedforsecurity=False).hexdigest()
        return f"{joined}-{len(self.part_md5s)}"


class Store:
    """One destination's object store; made by :func:`open_store`."""

    def __init__(
        self, store: ObjectStore, destination: StoreDestination, options: StorageOptions
    ) -> None:
        self._store = store
        self.destination = destination
        self.options = options

    def __repr__(self) -> str:
        return f"Store({self.destination.url!r})"

    def at(self, destination: StoreDestination) -> Store:
        """The same store (and its connections) at another prefix of the same bucket."""
        return (
            self
            if destination == self.destination
            else Store(self._store, destination, self.options)
        )

    def error(self, exc: BaseException, prediction_id: str | None = None) -> StorageError:
        """The library's error for a failure of the store (see :func:`storage_error`)."""
        return storage_error(exc, self.destination.url, prediction_id)

    async def check(self) -> None:
        """Fail early when the bucket is missing or the credentials are refused (one LIST)."""
        import obstore

        failure: StorageError | None = None
        try:
            await obstore.list_with_delimiter_async(self._store, self.destination.prefix or None)
        except Exception as exc:
            failure = self.error(exc)
        if failure is not None:
            raise failure

    async def put(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        attributes: Mapping[str, str],
        expected_size: int | None = None,
        prediction_id: str | None = None,
    ) -> StoredObject:
        """Write ``chunks`` to ``key``, whole or not at all, then check what the store holds."""
        import obstore

        digest = _Digest()
        parts = _parts(chunks, self.options.part_size, digest, expected_size)
        failure: WaveSpeedError | None = None
        try:
            first = await anext(parts, None)
            second = await anext(parts, None) if first is not None else None
            multipart = second is not None
            body: bytes | bytearray | AsyncIterator[bytes | bytearray]
            body = _chain(first, second, parts) if multipart else (first or b"")
            result = await obstore.put_async(
                self._store,
                key,
                body,
                attributes=dict(attributes),
                use_multipart=multipart,
                chunk_size=self.options.part_size,
                max_concurrency=self.options.concurrency,
            )
            if not digest.part_md5s:  # an empty output: one empty PUT
                digest.add(b"")
            meta = await obstore.head_async(self._store, key)
        except WaveSpeedError as exc:  # the source failed: the upload was aborted
            failure = exc
        except Exception as exc:
            failure = self.error(exc, prediction_id)
        if failure is not None:
            raise failure
        await self._verify(key, digest, multipart, result.get("e_tag"), meta, expected_size)
        return StoredObject(self.destination.url_of(key), digest.size, digest.sha256.hexdigest())

    async def put_bytes(
        self, key: str, data: bytes, *, attributes: Mapping[str, str], prediction_id: str
    ) -> StoredObject:
        """Write ``data`` (a decoded base64 output) to ``key`` and check it."""

        async def once() -> AsyncIterator[bytes]:
            yield data

        return await self.put(
            key, once(), attributes=attributes, expected_size=len(data), prediction_id=prediction_id
        )

    async def _verify(
        self,
        key: str,
        digest: _Digest,
        multipart: bool,
        etag: str | None,
        meta: Mapping[str, Any],
        expected_size: int | None,
    ) -> None:
        url = self.destination.url_of(key)
        problem = ""
        if expected_size is not None and digest.size != expected_size:
            problem = f"the output announced {expected_size} bytes but {digest.size} arrived"
        elif meta["size"] != digest.size:
            problem = f"{digest.size} bytes were sent but the store holds {meta['size']}"
        elif self.options.check_etag and self.destination.scheme == "s3":
            match = _ETAG_MD5.fullmatch(etag or "")
            if match is not None and match.group(0).strip('"') != digest.etag(multipart):
                problem = "the store's ETag is not the MD5 of the bytes sent"
        if problem:
            import obstore

            try:
                await obstore.delete_async(self._store, key)
            except Exception as exc:
                raise self.error(exc) from None
            raise ChecksumMismatch(
                f"{url}: {problem}; the object was removed", destination=self.destination.url
            )


async def _parts(
    chunks: AsyncIterable[bytes], part_size: int, digest: _Digest, size_hint: int | None
) -> AsyncIterator[bytearray]:
    """``chunks`` regrouped into parts of exactly ``part_size`` (the last may be shorter).

    Parts are filled in place and handed on as they are (one part's memory, not a buffer and
    a copy of it): a part is made whole when the output is known to fill it (``size_hint``, the
    announced size, or a part already filled), else it grows with the stream (a small output
    costs only its size). Each part is hashed in a worker thread (hashlib lets go of the GIL),
    off the event loop.
    """
    part, filled = bytearray(part_size if (size_hint or 0) >= part_size else 0), 0
    async for chunk in chunks:
        view = memoryview(chunk)
        while view:
            step = min(part_size - filled, len(view))
            part[filled : filled + step] = view[:step]
            filled, view = filled + step, view[step:]
            if filled == part_size:
                await anyio.to_thread.run_sync(digest.add, part)
                yield part
                part, filled = bytearray(part_size), 0
    if filled:
        del part[filled:]
        await anyio.to_thread.run_sync(digest.add, part)
        yield part


async def _chain(
    first: bytearray | None, second: bytearray | None, rest: AsyncIterator[bytearray]
) -> AsyncIterator[bytearray]:
    for part in (first, second):
        if part is not None:
            yield part
    async for part in rest:
        yield part


def open_store(destination: StoreDestination, options: StorageOptions) -> Store:
    """The store of ``destination``, configured from ``options`` and the environment.

    Raises :class:`StorageCredentialsMissing` when an S3 destination has no credentials in
    the options or the environment (nothing is sent then).
    """
    from obstore.store import from_url

    config: dict[str, Any] = dict(options.config)
    client: dict[str, Any] = {"connect_timeout": dt.timedelta(seconds=10)}
    provider = None
    if destination.scheme == "s3":
        provider = _s3_settings(destination, options, config)
        endpoint = config.get("endpoint", "")
        if endpoint.startswith("http://"):
            client["allow_http"] = True
    failure: WaveSpeedError | None = None
    try:
        store = from_url(  # type: ignore[call-overload]
            f"{destination.scheme}://{destination.bucket}",
            config=config or None,
            client_options=client,
            retry_config={
                "max_retries": options.max_retries,
                "retry_timeout": dt.timedelta(seconds=options.retry_timeout),
            },
            credential_provider=provider,
        )
    except Exception as exc:
        failure = ConfigurationError(
            f"cannot set up the store for {destination.url}: {_reason(exc)}"
        )
    if failure is not None:
        raise failure
    return Store(store, destination, options)


def _s3_settings(
    destination: StoreDestination, options: StorageOptions, config: dict[str, Any]
) -> Any:
    """Fill ``config`` for S3; return a credential provider for a profile, else ``None``."""
    endpoint = (
        options.endpoint
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
    )
    if endpoint:
        config["endpoint"] = endpoint
    if options.region:
        config["region"] = options.region
    config.setdefault("checksum_algorithm", "sha256")
    if options.access_key_id or options.secret_access_key:
        config["access_key_id"] = options.access_key_id or ""
        config["secret_access_key"] = options.secret_access_key or ""
        if options.session_token:
            config["session_token"] = options.session_token
        return None
    if any(all(os.environ.get(name) for name in names) for names in _CREDENTIAL_ENV):
        return None
    if config.get("skip_signature") in (True, "true") or "access_key_id" in config:
        return None
    profile = options.profile or os.environ.get("AWS_PROFILE")
    if profile:
        return _profile_provider(destination, profile)
    raise StorageCredentialsMissing(
        f"no credentials for {destination.url}: set AWS_ACCESS_KEY_ID and"
        " AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or pass StorageOptions(...)",
        destination=destination.url,
    )


def _profile_provider(destination: StoreDestination, profile: str) -> Any:
    failure: StorageError | None = None
    try:
        import boto3  # type: ignore[import-untyped]
        from obstore.auth.boto3 import Boto3CredentialProvider

        return Boto3CredentialProvider(boto3.Session(profile_name=profile))
    except ImportError:
        failure = StorageCredentialsMissing(
            f"the AWS profile {profile!r} for {destination.url} needs boto3 (pip install boto3)",
            destination=destination.url,
        )
    except Exception as exc:  # an unknown profile, a profile without credentials
        failure = StorageCredentialsMissing(
            f"the AWS profile {profile!r} gives no credentials for {destination.url}:"
            f" {type(exc).__name__}",
            destination=destination.url,
        )
    raise failure


def storage_error(exc: BaseException, destination: str, prediction_id: str | None) -> StorageError:
    """The library's error for ``exc``, raised by the store while writing to ``destination``."""
    from obstore.exceptions import PermissionDeniedError, UnauthenticatedError

    text = str(exc)
    reason = _reason(exc)
    kind: type[StorageError] = StorageError
    if "NoSuchBucket" in text or "ContainerNotFound" in text or "bucket does not exist" in text:
        kind, reason = BucketNotFound, "the bucket does not exist"
    elif "169.254.169.254" in text or ("credential" in text.lower() and "Invalid" not in text):
        kind, reason = StorageCredentialsMissing, "no credentials were found"
    elif isinstance(exc, (PermissionDeniedError, UnauthenticatedError, PermissionError)) or any(
        code in text for code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch")
    ):
        kind = StorageAccessDenied
        reason = f"the store refused the request ({_s3_code(text) or type(exc).__name__})"
    return kind(f"{destination}: {reason}", destination=destination, prediction_id=prediction_id)


def _s3_code(text: str) -> str:
    match = re.search(r"<Code>([A-Za-z]+)</Code>", text)
    return match[1] if match else ""


def _reason(exc: BaseException) -> str:
    """A short account of ``exc``: its S3 error code, else its first line, without URLs' queries."""
    code = _s3_code(str(exc))
    if code:
        return code
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return re.sub(r"\?\S*", "", first)[:200]
