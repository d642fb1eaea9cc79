"""The client's settings, checked before anything starts: the key, deadlines, scales."""

from __future__ import annotations

import os

from ..errors import ConfigurationError

__all__ = ["API_KEY_ENV", "BASE_URL_ENV", "api_key_from", "check_settings"]

API_KEY_ENV = "WAVESPEED_API_KEY"
BASE_URL_ENV = "WAVESPEED_BASE_URL"


def api_key_from(api_key: str | None) -> str:
    """The key given, else ``$WAVESPEED_API_KEY``; none says how to try the emulator instead."""
    key = (api_key if api_key is not None else os.environ.get(API_KEY_ENV, "")).strip()
    if not key:
        raise ConfigurationError(
            f"no API key: pass api_key=... or set the {API_KEY_ENV} environment variable"
            " (to try the client offline, run `wavespeed-async emulator --port 8765` and set"
            f" {API_KEY_ENV}=any {BASE_URL_ENV}=http://127.0.0.1:8765)"
        )
    return key


def check_settings(
    wait_timeout: float,
    request_timeout: float,
    time_scale: float,
    max_checks_per_second: float | None,
) -> None:
    """:class:`ConfigurationError` naming the first setting out of its range."""
    for name, value in (("wait_timeout", wait_timeout), ("request_timeout", request_timeout)):
        if not value > 0:
            raise ConfigurationError(f"{name} must be > 0 seconds, got {value!r}")
    if not 0 < time_scale <= 1:
        raise ConfigurationError(f"time_scale must be within (0, 1], got {time_scale!r}")
    if max_checks_per_second is not None and not max_checks_per_second > 0:
        raise ConfigurationError(
            f"max_checks_per_second must be > 0 or None, got {max_checks_per_second!r}"
        )
