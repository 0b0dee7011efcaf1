"""Anthropic error bodies → normalised ProviderError."""

from __future__ import annotations

from typing import Any, Final

import msgspec

from sluice.errors import ProviderError, ProviderErrorKind
from sluice.providers.base import kind_for_status, scrub, upstream_error
from sluice.schema.upstream import UpstreamResponse

_TYPE_KINDS: Final[dict[str, ProviderErrorKind]] = {
    "invalid_request_error": "bad_request",
    "authentication_error": "auth",
    "permission_error": "auth",
    "billing_error": "auth",
    "not_found_error": "not_found",
    "request_too_large": "context_window",
    "rate_limit_error": "rate_limited",
    "api_error": "server",
    "overloaded_error": "overloaded",
    "timeout_error": "timeout",
}


def _kind(etype: str | None, message: str, status: int | None) -> ProviderErrorKind:
    if etype == "invalid_request_error" and ("prompt is too long" in message or "context" in message.lower()):
        return "context_window"
    if etype in _TYPE_KINDS:
        return _TYPE_KINDS[etype]
    return kind_for_status(status) if status else "server"


def _error_fields(body: Any) -> tuple[str | None, str]:
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return None, ""
    return (str(err["type"]) if err.get("type") else None), str(err.get("message") or "")


def anthropic_error(resp: UpstreamResponse, provider: str, secret: str | None) -> ProviderError:
    try:
        etype, message = _error_fields(msgspec.json.decode(resp.body))
    except msgspec.DecodeError:
        etype, message = None, ""
    kind = _kind(etype, message, resp.status)
    return upstream_error(kind, message or f"HTTP {resp.status}", resp, provider, secret)


def stream_error(payload: Any, provider: str, secret: str | None) -> ProviderError:
    etype, message = _error_fields(payload)
    return ProviderError(
        _kind(etype, message, None), scrub(message or "error in stream", secret), provider=provider
    )
