"""The WaveSpeed v3 protocol, with no I/O: what a request is and what a response means.

Everything here is a pure function of its arguments, tested against recorded bodies; the
transport only moves the bytes.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import ipaddress
import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import attrs

from ..errors import (
    APIError,
    AuthenticationError,
    ConfigurationError,
    InsufficientBalance,
    InvalidInput,
    InvalidRequest,
    NotFound,
    ProtocolError,
    RateLimited,
    ServerError,
)
from .convert import converter, structure_prediction
from .models import Prediction

__all__ = [
    "DEFAULT_BASE_URL",
    "HISTORY_STATUSES",
    "Request",
    "auth_headers",
    "check_base_url",
    "is_sync_timeout",
    "parse_data",
    "parse_retry_after",
    "redact",
    "result_request",
    "submit_request",
    "upload_ticket_request",
    "UploadTicket",
    "parse_upload_ticket",
]

DEFAULT_BASE_URL = "https://api.wavespeed.ai"
SYNC_TIMEOUT_CODE = 5004
_BODY_EXCERPT = 300

_MODEL_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(?:/[\w.\-]+)*$")
#: A host name as DNS spells it (IP addresses are checked by ``ipaddress``).
_HOST_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9\-_.]*[A-Za-z0-9])?$")
#: ``Bearer <token>`` as an echoed ``Authorization`` header shows it, whatever the case.
_BEARER = re.compile(r"(bearer)\s+[^\s\"',;]+", re.IGNORECASE)
REDACTED = "***"
_PREDICTION_ID = re.compile(r"^[\w\-]+$")


@attrs.define(frozen=True)
class Request:
    """One HTTP request to the API, before it is sent.

    ``creates_task`` marks a POST that may create a billable task: its outcome, when unknown,
    must never be resent blindly.
    """

    method: str
    url: str
    json: Any = None
    creates_task: bool = False
    model: str = ""
    read_timeout: float | None = None


# --- configuration --------------------------------------------------------------------------


def check_base_url(url: str, *, allow_insecure_http: bool = False) -> str:
    """Validate and normalise the API's base URL (no trailing slash).

    The key travels in every request to it, so plain ``http://`` is refused except to a
    loopback host (the emulator) unless ``allow_insecure_http`` is set. A URL that could not
    be sent to (a bad port, an unclosed ``[``, spaces) is refused here, not at the first request.
    """
    text = url.strip() if isinstance(url, str) else ""
    try:
        parts = urlsplit(text)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        parts, port_ok = urlsplit(""), False
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"base_url must be an http(s) URL, got {url!r}")
    if not port_ok or any(char.isspace() or not char.isprintable() for char in text):
        raise ConfigurationError(f"base_url is not a usable URL: {url!r}")
    if not _is_ip(parts.hostname) and not _HOST_NAME.match(parts.hostname):
        raise ConfigurationError(f"base_url has an invalid host name: {parts.hostname!r}")
    if parts.query or parts.fragment or parts.username is not None or parts.password:
        raise ConfigurationError("base_url must not carry credentials, a query or a fragment")
    if parts.scheme == "http" and not allow_insecure_http and not _is_loopback(parts.hostname):
        raise ConfigurationError(
            f"refusing to send the API key over plain http to {parts.hostname}; use https, or"
            " pass allow_insecure_http=True if this network is trusted"
        )
    return text.rstrip("/")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def auth_headers(api_key: str) -> dict[str, str]:
    """Headers for requests to the API itself (never for storage or CDN URLs)."""
    return {"Authorization": f"Bearer {api_key}"}


# --- requests -------------------------------------------------------------------------------


def check_model_id(model: str) -> str:
    """Refuse model ids that would escape ``/api/v3/`` or carry a query."""
    if not isinstance(model, str) or not _MODEL_ID.match(model) or ".." in model:
        raise InvalidInput("model", model, "a model id such as 'wavespeed-ai/flux-dev'")
    return model


def check_prediction_id(prediction_id: str) -> str:
    """Refuse prediction ids that are not a single path segment."""
    if not isinstance(prediction_id, str) or not _PREDICTION_ID.match(prediction_id):
        raise InvalidInput("prediction_id", prediction_id, "a task id (letters, digits, - and _)")
    return prediction_id


def submit_request(
    base_url: str,
    model: str,
    body: Mapping[str, Any],
    *,
    webhook: str | None = None,
    sync_wait: float | None = None,
) -> Request:
    """``POST /api/v3/{model}``; ``sync_wait`` is how long a sync-mode POST may stay open."""
    url = f"{base_url}/api/v3/{check_model_id(model)}"
    if webhook is not None:
        if urlsplit(webhook).scheme not in ("http", "https"):
            raise InvalidInput("webhook", webhook, "an http(s) URL")
        url = f"{url}?{urlencode({'webhook': webhook})}"
    return Request("POST", url, dict(body), creates_task=True, model=model, read_timeout=sync_wait)


def result_request(base_url: str, prediction_id: str) -> Request:
    """``GET /api/v3/predictions/{id}/result``."""
    return Request(
        "GET", f"{base_url}/api/v3/predictions/{check_prediction_id(prediction_id)}/result"
    )


#: The statuses the history can be filtered by.
HISTORY_STATUSES = ("completed", "failed", "processing")


def history_request(
    base_url: str,
    *,
    model: str | None = None,
    status: str | None = None,
    created_after: dt.datetime | None = None,
    created_before: dt.datetime | None = None,
    page: int = 1,
    page_size: int = 100,
) -> Request:
    """``POST /api/v3/predictions``: a page of recent predictions, newest first.

    Every argument is checked first: :class:`InvalidInput` names the one that is wrong.
    """
    if not _is_int(page_size) or not 1 <= page_size <= 100:
        raise InvalidInput("page_size", page_size, "an integer from 1 to 100")
    if not _is_int(page) or page < 1:
        raise InvalidInput("page", page, "an integer, 1 or more")
    body: dict[str, Any] = {"page": page, "page_size": page_size}
    if model is not None:
        body["model"] = check_model_id(model)
    if status is not None:
        if not isinstance(status, str) or status not in HISTORY_STATUSES:
            raise InvalidInput("status", status, f"one of {', '.join(HISTORY_STATUSES)} or None")
        body["status"] = HISTORY_STATUSES[HISTORY_STATUSES.index(status)]  # a plain str
    for name, when in (("created_after", created_after), ("created_before", created_before)):
        if when is not None:
            body[name] = _history_time(name, when)
    return Request("POST", f"{base_url}/api/v3/predictions", body)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _history_time(name: str, when: object) -> str:
    allowed = "a datetime (a naive one is taken as UTC) from year 1 to 9999 in UTC"
    if not isinstance(when, dt.datetime):
        raise InvalidInput(name, when, allowed)
    try:
        return str(converter.unstructure(when))
    except (OverflowError, ValueError):  # within a day of year 1 or 9999, in another zone
        raise InvalidInput(name, when, allowed) from None


def parse_history(data: Any) -> list[Prediction]:
    """The predictions of a history page."""
    items = data.get("items") if isinstance(data, Mapping) else None
    if not isinstance(items, list):
        raise ProtocolError("history page without items")
    return [structure_prediction(item) for item in items]


def upload_ticket_request(base_url: str, filename: str, size: int, content_type: str) -> Request:
    """``POST /api/v3/media/uploads``: ask where to PUT a file."""
    body = {"filename": filename, "size": size, "content_type": content_type}
    return Request("POST", f"{base_url}/api/v3/media/uploads", body)


@attrs.define(frozen=True)
class UploadTicket:
    """Where to PUT a file (a pre-signed URL: no API key) and the URL to use it by."""

    method: str
    url: str
    headers: dict[str, str]
    download_url: str


def parse_upload_ticket(data: Any) -> UploadTicket:
    """Read the ``data`` of an upload-ticket response."""
    upload = data.get("upload") if isinstance(data, Mapping) else None
    if not isinstance(upload, Mapping):
        raise ProtocolError("upload ticket without an upload instruction")
    method, url = str(upload.get("method") or "PUT").upper(), upload.get("url")
    download_url = data.get("download_url")
    if method != "PUT" or not isinstance(url, str) or not isinstance(download_url, str):
        raise ProtocolError(f"unusable upload ticket: method {method}, url or download_url missing")
    headers = upload.get("headers") or {}
    if not isinstance(headers, Mapping):
        raise ProtocolError("upload ticket headers are not an object")
    return UploadTicket(method, url, {str(k): str(v) for k, v in headers.items()}, download_url)


# --- responses ------------------------------------------------------------------------------


def parse_data(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    prediction_id: str | None = None,
    secret: str | None = None,
) -> Any:
    """Return the envelope's ``data``, or raise the error the response means.

    A status outside 2xx, or an envelope whose ``code`` is outside 2xx, is an
    :class:`APIError` subclass; a 2xx that is not the envelope (or JSON too deeply nested to
    read) is a :class:`ProtocolError`. A 201 or 202 carrying the envelope is a success.
    Server text put into an error is passed through :func:`redact` (with ``secret``, the
    API key, removed too), since a proxy may echo the request's ``Authorization`` header.
    """
    envelope = _decode_json(body)
    if not _is_success(status):
        message = _message(envelope) or _excerpt(body, secret) or f"HTTP {status}"
        code = envelope.get("code") if isinstance(envelope, Mapping) else None
        raise _error_for(status, message, headers, body, _as_int(code), prediction_id, secret)
    if not isinstance(envelope, Mapping):
        raise ProtocolError(f"expected the API's JSON envelope, got {_excerpt(body, secret)!r}")
    code = _as_int(envelope.get("code"))
    if code is not None and not _is_success(code):
        message = _message(envelope) or f"error code {code}"
        raise _error_for(code, message, headers, body, code, prediction_id, secret)
    if "data" not in envelope:
        raise ProtocolError(f"envelope without data: {_excerpt(body, secret)!r}")
    return envelope["data"]


def redact(text: str, secret: str | None) -> str:
    """``text`` without ``secret`` (the API key) and without any ``Bearer <token>``.

    >>> redact("echo: Authorization: bearer sk-123, key sk-123", "sk-123")
    'echo: Authorization: bearer ***, key ***'
    """
    if secret:
        text = re.sub(re.escape(secret), REDACTED, text, flags=re.IGNORECASE)
    return _BEARER.sub(rf"\1 {REDACTED}", text)


def _is_success(status: int) -> bool:
    return 200 <= status < 300


def is_sync_timeout(prediction: Prediction) -> bool:
    """Whether a sync-mode answer means "still running, poll me" rather than an outcome."""
    if prediction.code == SYNC_TIMEOUT_CODE:
        return True
    return "sync mode timed out" in prediction.error.lower()


def parse_retry_after(
    headers: Mapping[str, str], *, now: dt.datetime | None = None
) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), or ``None``."""
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    now = now or dt.datetime.now(dt.timezone.utc)
    return max(0.0, (when - now).total_seconds())


def _error_for(
    status: int,
    message: str,
    headers: Mapping[str, str],
    body: bytes,
    code: int | None,
    prediction_id: str | None,
    secret: str | None,
) -> APIError:
    kwargs: dict[str, Any] = {
        "status": status,
        "code": code,
        "body": _excerpt(body, secret),
        "prediction_id": prediction_id,
        "retry_after": parse_retry_after(headers),
        "request_id": headers.get("X-Request-Id"),
    }
    text = f"HTTP {status}: {redact(message, secret)}"
    if "balance" in message.lower() and 400 <= status < 500:
        return InsufficientBalance(text, **kwargs)
    if status in (401, 403):
        return AuthenticationError(text, **kwargs)
    if status == 404:
        return NotFound(text, **kwargs)
    if status == 429:
        return RateLimited(text, **kwargs)
    if 500 <= status < 600:
        return ServerError(text, **kwargs)
    if 400 <= status < 500:
        return InvalidRequest(text, **kwargs)
    return APIError(text, **kwargs)


def _decode_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None


def _message(envelope: Any) -> str:
    if isinstance(envelope, Mapping):
        for key in ("message", "error", "detail"):
            if isinstance(envelope.get(key), str) and envelope[key]:
                return str(envelope[key])
    return ""


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _excerpt(body: bytes, secret: str | None = None) -> str:
    # Redact a window wider than the excerpt, so that a key cut by the excerpt's end goes too.
    window = body[: _BODY_EXCERPT + len(secret or "") + 64].decode("utf-8", errors="replace")
    text = re.sub(r"\s+", " ", redact(window, secret)).strip()
    return text[:_BODY_EXCERPT]
