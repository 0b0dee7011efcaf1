"""Gemini's ``{"error": {"code", "message", "status"}}`` → normalised ProviderError."""

from __future__ import annotations

from typing import Any, Final

import msgspec

from sluice.errors import ProviderError, ProviderErrorKind
from sluice.providers.base import kind_for_status, scrub, upstream_error
from sluice.schema.upstream import UpstreamResponse

_STATUS_KINDS: Final[dict[str, ProviderErrorKind]] = {
    "INVALID_ARGUMENT": "bad_request", "FAILED_PRECONDITION": "bad_request", "UNAUTHENTICATED": "auth",
    "PERMISSION_DENIED": "auth", "NOT_FOUND": "not_found", "RESOURCE_EXHAUSTED": "rate_limited",
    "INTERNAL": "server", "UNAVAILABLE": "overloaded", "DEADLINE_EXCEEDED": "timeout",
}  # fmt: skip


def _fields(body: Any) -> tuple[str | None, str]:
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(body, list) and body and isinstance(body[0], dict):
        err = body[0].get("error")
    if not isinstance(err, dict):
        return None, ""
    return (str(err["status"]) if err.get("status") else None), str(err.get("message") or "")


def _kind(status_name: str | None, message: str, http_status: int | None) -> ProviderErrorKind:
    if "token" in message.lower() and ("exceed" in message.lower() or "too long" in message.lower()):
        return "context_window"
    if status_name in _STATUS_KINDS:
        return _STATUS_KINDS[status_name]
    return kind_for_status(http_status) if http_status else "server"


def gemini_error(resp: UpstreamResponse, provider: str, secret: str | None) -> ProviderError:
    try:
        status_name, message = _fields(msgspec.json.decode(resp.body))
    except msgspec.DecodeError:
        status_name, message = None, ""
    kind = _kind(status_name, message, resp.status)
    return upstream_error(kind, message or f"HTTP {resp.status}", resp, provider, secret)


def stream_error(payload: Any, provider: str, secret: str | None) -> ProviderError:
    status_name, message = _fields(payload)
    return ProviderError(
        _kind(status_name, message, None), scrub(message or "error in stream", secret), provider=provider
    )
