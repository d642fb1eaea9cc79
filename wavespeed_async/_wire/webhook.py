"""The webhook scheme, as pure functions: sign a delivery, verify one, read its prediction.

The platform POSTs a finished prediction with three headers: ``webhook-id`` (the same on
every retry), ``webhook-timestamp`` (Unix seconds) and ``webhook-signature`` (``v3,<hex>``,
the HMAC-SHA256 of ``{id}.{timestamp}.{raw body}`` keyed with the account's secret minus its
``whsec_`` prefix, taken as UTF-8 text). Nothing here does I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

import attrs

from ..errors import ConfigurationError, ProtocolError, WebhookVerificationError
from .convert import structure_prediction
from .models import Prediction
from .protocol import Request

__all__ = [
    "DEFAULT_TOLERANCE",
    "ID_HEADER",
    "SECRET_PREFIX",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Delivery",
    "check_secret",
    "header",
    "parse_webhook_secret",
    "sign_webhook",
    "verify_delivery",
    "verify_webhook",
    "webhook_secret_request",
]

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v3"
#: Seconds a delivery's timestamp may be from now, either way, before it is refused.
DEFAULT_TOLERANCE = 300.0
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"


@attrs.frozen
class Delivery:
    """A verified delivery: its ``webhook_id``, when it was signed, and its prediction.

    ``prediction_json`` is the prediction object's JSON (the body itself unless the body was
    wrapped in the API's envelope): what is handed to other processes.
    """

    webhook_id: str
    signed_at: int
    prediction: Prediction
    prediction_json: bytes


def check_secret(secret: str) -> bytes:
    """The HMAC key of ``secret``: the text after ``whsec_`` (not base64-decoded), as UTF-8.

    Raises :class:`ConfigurationError` for an empty secret.
    """
    key = secret.strip().removeprefix(SECRET_PREFIX)
    if not key:
        raise ConfigurationError("the webhook secret is empty")
    return key.encode("utf-8")  # the text itself, not base64-decoded: the platform's reading


def sign_webhook(secret: str, webhook_id: str, timestamp: int | str, body: bytes | str) -> str:
    """The ``webhook-signature`` value of a delivery: ``v3,<hex HMAC-SHA256>``.

    ``secret`` may keep its ``whsec_`` prefix; ``body`` is the exact bytes sent. Useful to
    test your own receiver:

    >>> sign_webhook("whsec_abc", "msg_1", 1700000000, b'{"id":"p1"}')  # doctest: +ELLIPSIS
    'v3,...'
    """
    raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    message = f"{webhook_id}.{timestamp}.".encode() + raw
    digest = hmac.new(check_secret(secret), message, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION},{digest}"


def verify_webhook(
    headers: Mapping[str, str],
    raw_body: bytes | str,
    secret: str,
    tolerance: float = DEFAULT_TOLERANCE,
    *,
    now: float | None = None,
) -> Prediction:
    """Check a delivery and return its :class:`Prediction`.

    ``headers`` is any mapping (names are matched case-insensitively), ``raw_body`` the body
    exactly as received (parse it *after* verifying), ``secret`` the account's ``whsec_...``
    secret. Raises :class:`WebhookVerificationError` whose ``check`` says what failed. The
    signature is checked before the timestamp, so ``"timestamp"`` always means a genuine but
    stale (or future) delivery. ``now`` (Unix seconds) replaces the system clock.

    >>> prediction = verify_webhook(request.headers, await request.read(), secret)  # doctest: +SKIP
    """
    return verify_delivery(headers, raw_body, secret, tolerance, now=now).prediction


def verify_delivery(
    headers: Mapping[str, str],
    raw_body: bytes | str,
    secret: str,
    tolerance: float = DEFAULT_TOLERANCE,
    *,
    now: float | None = None,
) -> Delivery:
    """:func:`verify_webhook`, answering the whole :class:`Delivery`."""
    webhook_id = header(headers, ID_HEADER)
    timestamp = header(headers, TIMESTAMP_HEADER)
    offered = header(headers, SIGNATURE_HEADER)
    expected = sign_webhook(secret, webhook_id, timestamp, raw_body).encode()
    # Several space-separated signatures are allowed (as during a secret rotation).
    if not any(
        hmac.compare_digest(expected, candidate.lower().encode("utf-8"))
        for candidate in offered.split()
    ):
        raise WebhookVerificationError("signature", f"no {SIGNATURE_VERSION} signature matches")
    try:
        signed_at = int(timestamp)
    except ValueError:
        raise WebhookVerificationError("timestamp", "not Unix seconds") from None
    skew = (time.time() if now is None else now) - signed_at
    if abs(skew) > tolerance:
        when = "old" if skew > 0 else "in the future"
        raise WebhookVerificationError(
            "timestamp", f"signed {abs(skew):.0f} s {when}; tolerance is {tolerance:g} s"
        )
    prediction, prediction_json = _read_body(raw_body)
    return Delivery(webhook_id, signed_at, prediction, prediction_json)


def header(headers: Mapping[str, str], name: str) -> str:
    """The stripped value of header ``name`` (any capitalisation); refused when missing."""
    value = headers.get(name)
    if value is None:  # a plain dict: look for any capitalisation
        value = next((v for key, v in headers.items() if key.lower() == name), None)
    if value is None or not value.strip():
        raise WebhookVerificationError("headers", f"no {name} header")
    return value.strip()


def _read_body(raw_body: bytes | str) -> tuple[Prediction, bytes]:
    raw = raw_body.encode("utf-8") if isinstance(raw_body, str) else bytes(raw_body)
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested too deeply to read
        raise WebhookVerificationError("payload", "the body is not readable JSON") from None
    if isinstance(data, Mapping) and "id" not in data and isinstance(data.get("data"), Mapping):
        data = data["data"]  # the API's envelope: not what the platform sends, but harmless
        raw = json.dumps(data, separators=(",", ":")).encode()
    try:
        prediction = structure_prediction(data)
    except ProtocolError as exc:
        raise WebhookVerificationError("payload", exc.message) from None
    if not prediction.id:
        raise WebhookVerificationError("payload", "the prediction has no id")
    return prediction, raw


def webhook_secret_request(base_url: str) -> Request:
    """``GET /api/v3/webhook/secret``."""
    return Request("GET", f"{base_url}/api/v3/webhook/secret")


def parse_webhook_secret(data: Any) -> str:
    """The secret in the ``data`` of a ``/webhook/secret`` answer."""
    secret = data.get("secret") if isinstance(data, Mapping) else None
    if not isinstance(secret, str) or not secret.strip():
        raise ProtocolError("webhook secret answer without a secret")
    return secret.strip()
