"""The exception hierarchy of wavespeed-async.

Every error the library raises on purpose derives from :class:`WaveSpeedError`::

    WaveSpeedError
    ├── InvalidInput           bad arguments, caught before any request is sent (also ValueError)
    │   └── IdempotencyConflict  one idempotency key reused with another payload
    ├── ConfigurationError     no API key, a malformed base URL, a client used from a second loop
    ├── ClientClosed           the client was closed while (or before) this call ran
    ├── NotFinished            the task has not finished yet (nothing to download)
    ├── CostLimitExceeded      a batch would spend more than ``max_cost`` or the balance
    ├── CoordinatorUnavailable the coordinator (Redis) cannot be reached; nothing was sent
    ├── SubmissionUncertain    a submit may or may not have created a (billable) task
    ├── TransportError         the request failed below HTTP; it may have reached the server
    │   └── ConnectError         no connection was made: nothing was sent
    ├── ProtocolError          the server answered something that is not the API's envelope
    │                          (or an amount of money that is not a finite number >= 0)
    │   └── ResponseTooLarge     the answer passed the size cap (counted inflated)
    ├── APIError               the server answered with an error (HTTP status or envelope code)
    │   ├── AuthenticationError  401, 403
    │   ├── InsufficientBalance  the account cannot pay for the task
    │   ├── InvalidRequest       400, 413, 422 and other client errors
    │   ├── NotFound             404
    │   ├── RateLimited          429
    │   └── ServerError          5xx
    ├── PredictionFailed       the task reached a failed terminal status (carries the Prediction)
    ├── PredictionTimeout      a wait's deadline passed (also TimeoutError; the task keeps running)
    ├── JournalError           a batch journal is unreadable, corrupt, in use or cannot be written
    ├── OutputExpired          an output URL is gone: the platform's 7-day retention passed
    ├── StorageError           copying outputs into object storage failed (names the destination)
    │   ├── BucketNotFound       the bucket (or container) does not exist
    │   ├── StorageCredentialsMissing  no credentials for the destination were found
    │   ├── StorageAccessDenied  the credentials may not write there (read-only, forbidden)
    │   └── ChecksumMismatch     what the store holds is not what was downloaded
    └── WebhookVerificationError  a webhook delivery failed a check

Local faults (``InvalidInput``, ``ConfigurationError``) are split from remote ones, and every
error raised while a prediction id is known carries it in ``prediction_id``. A submit that
fails after its request may have reached the server is :class:`SubmissionUncertain` whatever
the failure below it (a reset, a 502, an unreadable answer): ``__cause__`` says which.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ._wire.models import Prediction

__all__ = [
    "APIError",
    "AuthenticationError",
    "BucketNotFound",
    "ChecksumMismatch",
    "ClientClosed",
    "ConfigurationError",
    "ConnectError",
    "CoordinatorUnavailable",
    "CostLimitExceeded",
    "IdempotencyConflict",
    "InsufficientBalance",
    "InvalidInput",
    "InvalidRequest",
    "JournalError",
    "NotFinished",
    "NotFound",
    "OutputExpired",
    "PredictionFailed",
    "PredictionTimeout",
    "ProtocolError",
    "RateLimited",
    "ResponseTooLarge",
    "ServerError",
    "StorageAccessDenied",
    "StorageCredentialsMissing",
    "StorageError",
    "SubmissionUncertain",
    "TransportError",
    "WaveSpeedError",
    "WebhookVerificationError",
]


class WaveSpeedError(Exception):
    """Base class of every error this library raises.

    ``prediction_id`` names the task the error concerns, when one is known, so that a failure
    never loses a task that was created.
    """

    def __init__(self, message: str, *, prediction_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.prediction_id = prediction_id

    def __str__(self) -> str:
        if self.prediction_id and self.prediction_id not in self.message:
            return f"{self.message} (prediction id: {self.prediction_id})"
        return self.message


class InvalidInput(WaveSpeedError, ValueError):
    """An argument is outside what the API accepts; raised before anything is sent.

    ``field`` names the argument, ``value`` is what was given and ``allowed`` describes the
    accepted values.
    """

    def __init__(self, field: str, value: object, allowed: str) -> None:
        shown = repr(value)
        if len(shown) > 80:  # a whole data: URI or a 10,000-character prompt helps nobody
            shown = f"{shown[:60]}...<{len(shown)} characters>"
        super().__init__(f"{field}={shown} is invalid: must be {allowed}")
        self.field = field
        self.value = value
        self.allowed = allowed


class IdempotencyConflict(InvalidInput):
    """An idempotency key was used before with a different model or payload."""

    def __init__(self, key: str) -> None:
        super().__init__("idempotency_key", key, "used with the same model and payload each time")


class ConfigurationError(WaveSpeedError):
    """The client is not set up to talk to the API (for example, no API key)."""


class TransportError(WaveSpeedError):
    """A request failed below HTTP: connection reset, read timeout, refused, DNS failure.

    ``timed_out`` tells a timeout from other failures.
    """

    def __init__(
        self, message: str, *, prediction_id: str | None = None, timed_out: bool = False
    ) -> None:
        super().__init__(message, prediction_id=prediction_id)
        self.timed_out = timed_out


class ConnectError(TransportError):
    """No connection could be made (refused, DNS failure, connect timeout): nothing was sent."""


class ClientClosed(WaveSpeedError):
    """The client was closed before or while this call ran.

    ``prediction_id`` names a task that was known by then (it keeps running on the platform).
    """


class NotFinished(WaveSpeedError):
    """The task has not reached a terminal status yet (for example, nothing to download)."""


class CostLimitExceeded(WaveSpeedError):
    """Running a batch would spend more than its ``max_cost`` (or the balance).

    ``quoted`` is the total quote in USD, ``limit`` the ceiling it passed.
    """

    def __init__(self, message: str, *, quoted: float, limit: float) -> None:
        super().__init__(message)
        self.quoted = quoted
        self.limit = limit


class CoordinatorUnavailable(WaveSpeedError):
    """The coordinator (Redis) could not be reached; a submit that needed it was not sent."""


class SubmissionUncertain(WaveSpeedError):
    """A submit failed after its body may have reached the server.

    The task may exist (and be billed), so the client never resends it. Reconcile by listing
    recent predictions for ``model`` created after ``sent_at`` (the API's history,
    ``POST /api/v3/predictions``) before submitting again. ``__cause__`` is the failure seen.

    With an idempotency key, ``key`` names it and the key stays *uncertain*: every later call
    with it raises this error at once (nothing is sent) until a history read proves the
    outcome, or ``client.resolve_key(key, prediction_id=...)`` / ``absent=True`` settles it.
    ``sent_at`` is when the submit was sent (UTC); ``reason`` says what is known.
    """

    def __init__(
        self,
        message: str,
        *,
        model: str,
        payload: Mapping[str, Any],
        sent_at: dt.datetime,
        key: str | None = None,
        reason: str = "",
    ) -> None:
        super().__init__(message)
        self.model = model
        self.payload = payload
        self.sent_at = sent_at
        self.key = key
        self.reason = reason


class ProtocolError(WaveSpeedError):
    """The server's answer could not be understood (not JSON, not the API's envelope)."""


class ResponseTooLarge(ProtocolError):
    """The answer was larger than the client's cap (``max_response_bytes``, counted inflated)."""


class APIError(WaveSpeedError):
    """The API answered with an error.

    ``status`` is the HTTP status, ``code`` the envelope's code (they differ when a 200 carries
    an error envelope), ``body`` the start of the raw answer, ``retry_after`` the server's
    ``Retry-After`` advice in seconds (``None`` without one), ``request_id`` its
    ``X-Request-Id``.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: int | None = None,
        body: str = "",
        prediction_id: str | None = None,
        retry_after: float | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, prediction_id=prediction_id)
        self.status = status
        self.code = code
        self.body = body
        self.retry_after = retry_after
        self.request_id = request_id


class AuthenticationError(APIError):
    """The API key is missing, wrong, or the account is suspended (401, 403)."""


class InsufficientBalance(APIError):
    """The account's balance cannot pay for the task; top up before retrying."""


class InvalidRequest(APIError):
    """The server rejected the input (400 and other client errors); not worth retrying."""


class NotFound(APIError):
    """The model or the prediction does not exist (404)."""


class RateLimited(APIError):
    """Too many requests (429). ``retry_after`` is the server's advice in seconds, if any."""


class ServerError(APIError):
    """The platform failed (5xx)."""


class PredictionFailed(WaveSpeedError):
    """The task reached a failed terminal status (failed, cancelled, timeout, deleted).

    ``prediction`` holds the task's final state; its ``error`` says why.
    """

    def __init__(self, prediction: Prediction) -> None:
        reason = prediction.error or "no reason given"
        super().__init__(
            f"prediction {prediction.id} {prediction.raw_status}: {reason}",
            prediction_id=prediction.id,
        )
        self.prediction = prediction


class PredictionTimeout(WaveSpeedError, TimeoutError):
    """A wait's deadline passed before the task finished (or before a submit could be sent).

    The remote task keeps running: resume with ``client.prediction(err.prediction_id)``.
    ``prediction`` is the last state seen, if any. ``prediction_id`` is ``None`` when the
    deadline passed before any task was created (waiting for a running slot, say).
    """

    def __init__(
        self,
        prediction_id: str | None,
        timeout: float,
        prediction: Prediction | None = None,
        *,
        reason: str = "",
    ) -> None:
        if prediction_id is None:
            message = f"deadline of {timeout:g}s passed: {reason or 'no task was created'}"
        else:
            status = prediction.raw_status if prediction else "unknown"
            message = (
                f"prediction {prediction_id} not finished after {timeout:g}s (last status:"
                f" {status}); it keeps running on the platform"
            )
        super().__init__(message, prediction_id=prediction_id)
        self.timeout = timeout
        self.prediction = prediction


class JournalError(WaveSpeedError):
    """A batch journal cannot be used: unreadable, corrupt, in use, or a write failed.

    After a failed write, ``prediction_id`` names the task whose record was lost.
    """


class OutputExpired(WaveSpeedError):
    """An output's URL no longer serves it: the platform keeps outputs for 7 days.

    ``prediction_id`` names the task, ``age`` is how old it is (from the task's ``created_at``
    to the output host's ``Date``, else this machine's clock) and ``index`` the output's
    position. Nothing can bring the file back: run the task again.
    """

    def __init__(self, prediction_id: str, age: dt.timedelta, index: int) -> None:
        days = age.total_seconds() / 86400
        super().__init__(
            f"output {index} of prediction {prediction_id} has expired: the task is"
            f" {days:.1f} days old and the platform keeps outputs for 7 days",
            prediction_id=prediction_id,
        )
        self.age = age
        self.index = index


class StorageError(WaveSpeedError):
    """Copying an output into object storage failed; nothing is left under the final name.

    ``destination`` is the destination URL as given (``s3://bucket/prefix/``); it never
    carries credentials, and neither does the message.
    """

    def __init__(self, message: str, *, destination: str, prediction_id: str | None = None) -> None:
        super().__init__(message, prediction_id=prediction_id)
        self.destination = destination


class BucketNotFound(StorageError):
    """The destination's bucket (or container) does not exist; create it first."""


class StorageCredentialsMissing(StorageError):
    """No credentials for the destination were found in the arguments or the environment."""


class StorageAccessDenied(StorageError):
    """The store refused the credentials or the write (a read-only destination, say)."""


class ChecksumMismatch(StorageError):
    """The stored object's size or checksum differs from the bytes downloaded; it was removed."""


WebhookCheck = Literal["headers", "signature", "timestamp", "payload"]


class WebhookVerificationError(WaveSpeedError):
    """A delivery failed verification; ``check`` names the check that failed.

    - ``"headers"``: a ``webhook-id``, ``webhook-timestamp`` or ``webhook-signature`` header
      is missing or empty;
    - ``"signature"``: no ``v3`` signature matches (a wrong secret, or an altered body);
    - ``"timestamp"``: signed more than ``tolerance`` seconds before or after now (a replay,
      or a skewed clock), or not Unix seconds;
    - ``"payload"``: correctly signed, but not a prediction object.
    """

    def __init__(self, check: WebhookCheck, reason: str) -> None:
        super().__init__(f"webhook {check} check failed: {reason}")
        self.check: WebhookCheck = check
