"""OpenAI-style error bodies → normalised ProviderError."""

from __future__ import annotations

from typing import Any

import msgspec

from sluice.errors import ProviderError, ProviderErrorKind
from sluice.providers.base import kind_for_status, scrub, upstream_error
from sluice.schema.upstream import UpstreamResponse

_CODE_KINDS: dict[str, ProviderErrorKind] = {
    "context_length_exceeded": "context_window",
    "string_above_max_length": "context_window",
    "content_filter": "content_filter",
    "content_policy_violation": "content_filter",
    "model_not_found": "not_found",
}


def error_message_and_code(body: bytes) -> tuple[str | None, str | None]:
    """Read ``{"error": {...}}`` (OpenAI, vLLM ≥ 0.10.1) or ``{"object": "error", ...}`` (older vLLM)."""
    try:
        data: Any = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None, None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        data = data["error"]
    elif isinstance(data, dict) and isinstance(data.get("error"), str):
        return data["error"], None
    if not isinstance(data, dict):
        return None, None
    message = data.get("message")
    code = data.get("code")
    return (str(message) if message is not None else None, str(code) if isinstance(code, str) else None)


def openai_error(resp: UpstreamResponse, provider: str, secret: str | None) -> ProviderError:
    message, code = error_message_and_code(resp.body)
    kind = _CODE_KINDS.get(code or "", kind_for_status(resp.status))
    return upstream_error(kind, message or "", resp, provider, secret)


def stream_error(payload: Any, provider: str, secret: str | None) -> ProviderError:
    """An ``{"error": {...}}`` object sent inside a stream."""
    err = payload.get("error") if isinstance(payload, dict) else None
    message = err.get("message") if isinstance(err, dict) else None
    etype = err.get("type") if isinstance(err, dict) else None
    kind: ProviderErrorKind = "overloaded" if etype in ("overloaded_error", "server_overloaded") else "server"
    return ProviderError(kind, scrub(str(message or "error in stream"), secret), provider=provider)
