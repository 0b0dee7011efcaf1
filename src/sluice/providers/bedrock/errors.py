"""Bedrock errors (``x-amzn-ErrorType`` header or ``__type``, message in ``message``) → ProviderError."""

from __future__ import annotations

from typing import Any, Final

import msgspec

from sluice.errors import ProviderError, ProviderErrorKind
from sluice.providers.base import kind_for_status, scrub, upstream_error
from sluice.schema.upstream import UpstreamResponse

_TYPE_KINDS: Final[dict[str, ProviderErrorKind]] = {
    "ValidationException": "bad_request", "AccessDeniedException": "auth", "UnrecognizedClientException": "auth",
    "ResourceNotFoundException": "not_found", "ModelTimeoutException": "timeout", "ThrottlingException": "rate_limited",
    "ServiceQuotaExceededException": "rate_limited", "ModelNotReadyException": "overloaded",
    "ServiceUnavailableException": "overloaded", "ModelErrorException": "server", "InternalServerException": "server",
    "ModelStreamErrorException": "server", "internalServerException": "server", "modelStreamErrorException": "server",
    "validationException": "bad_request", "throttlingException": "rate_limited",
    "serviceUnavailableException": "overloaded",
}  # fmt: skip


def _kind(error_type: str, message: str, status: int | None) -> ProviderErrorKind:
    lowered = message.lower()
    if (
        "too long" in lowered
        or ("context" in lowered and "exceed" in lowered)
        or "too many input tokens" in lowered
    ):
        return "context_window"
    if error_type in _TYPE_KINDS:
        return _TYPE_KINDS[error_type]
    return kind_for_status(status) if status else "server"


def _message(body: Any) -> str:
    if isinstance(body, dict):
        return str(body.get("message") or body.get("Message") or "")
    return ""


def bedrock_error(resp: UpstreamResponse, provider: str, secret: str | None) -> ProviderError:
    try:
        body = msgspec.json.decode(resp.body)
    except msgspec.DecodeError:
        body = {}
    error_type = resp.headers.get("x-amzn-errortype", "").split(":", 1)[0]
    if not error_type and isinstance(body, dict):
        error_type = str(body.get("__type", "")).rsplit("#", 1)[-1]
    message = _message(body)
    kind = _kind(error_type, message, resp.status)
    return upstream_error(kind, message or f"HTTP {resp.status} {error_type}", resp, provider, secret)


def stream_exception(exception_type: str, payload: bytes, provider: str, secret: str | None) -> ProviderError:
    try:
        message = _message(msgspec.json.decode(payload))
    except msgspec.DecodeError:
        message = ""
    return ProviderError(
        _kind(exception_type, message, None), scrub(message or exception_type, secret), provider=provider
    )
