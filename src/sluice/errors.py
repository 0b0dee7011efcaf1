"""The one exception hierarchy of Sluice.

Every error that can reach a caller is a :class:`SluiceError`; the server renders it in the
caller's dialect (OpenAI or Anthropic) from its ``status``, ``kind`` and ``message``.

::

    SluiceError                      status, kind, message, source ("gateway" | "provider")
    ├── ConfigError                  the policy file is wrong (never reaches a caller: fails start-up)
    ├── GatewayError                 the caller's request was refused by the gateway
    │   ├── BadRequest               400 malformed JSON, wrong field types, invalid values
    │   ├── AuthenticationFailed     401 missing, unknown or revoked gateway key
    │   ├── PermissionDenied         403 key not allowed to use a model / the admin API
    │   ├── NotFound                 404 unknown model or route
    │   ├── RequestTimeout           408 the request's body did not arrive in time
    │   ├── PayloadTooLarge          413 body over server.max_body_bytes
    │   ├── UnsupportedMediaType     415 body is not application/json
    │   ├── RateLimited              429 a gateway limit fired (retry_after set)
    │   ├── ServiceUnavailable       503 the gateway cannot serve now (draining, state outage)
    │   │   └── GuardrailUnavailable 503 a guardrail failed or timed out (fail closed)
    │   └── GuardrailBlocked         400 (input) / 502 (output) a guardrail refused the text
    └── ProviderError                an upstream failed; ``kind`` is one of PROVIDER_ERROR_KINDS
                                     and ``retryable`` tells routing whether another attempt may help

Nothing in a message may contain a secret: messages are built from our own text and from
upstream error messages, never from request headers or provider credentials.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

ErrorSource = Literal["gateway", "provider"]

#: Normalised provider error kinds. Routing decides on the kind alone.
ProviderErrorKind = Literal[
    "auth",
    "bad_request",
    "not_found",
    "rate_limited",
    "overloaded",
    "timeout",
    "server",
    "context_window",
    "content_filter",
    "connection",
    "bad_response",
]
PROVIDER_ERROR_KINDS: Final = frozenset(get_args(ProviderErrorKind))

_RETRYABLE_KINDS: Final = frozenset(
    {"rate_limited", "overloaded", "timeout", "server", "connection", "bad_response"}
)

#: HTTP status the gateway answers with for each provider error kind.
_KIND_STATUS: Final[dict[ProviderErrorKind, int]] = {
    "auth": 502,  # the gateway's provider credentials are wrong: not the caller's fault
    "bad_request": 400,
    "not_found": 404,
    "rate_limited": 429,
    "overloaded": 503,
    "timeout": 504,
    "server": 502,
    "context_window": 400,
    "content_filter": 400,
    "connection": 502,
    "bad_response": 502,
}


class SluiceError(Exception):
    """Base class: an error with an HTTP status that can be rendered to a caller."""

    status: int = 500
    kind: str = "internal"
    source: ErrorSource = "gateway"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.retry_after: float | None = None
        self.should_retry: bool | None = None
        #: Extra response headers (e.g. x-ratelimit-*); never credentials.
        self.headers: dict[str, str] = {}


class ConfigError(SluiceError):
    """The policy file (or an env secret it references) is invalid."""

    kind = "config"


class GatewayError(SluiceError):
    """The gateway refused the request."""


class BadRequest(GatewayError):
    status = 400
    kind = "bad_request"


class AuthenticationFailed(GatewayError):
    status = 401
    kind = "auth"


class PermissionDenied(GatewayError):
    status = 403
    kind = "permission"


class NotFound(GatewayError):
    status = 404
    kind = "not_found"


class RequestTimeout(GatewayError):
    status = 408
    kind = "request_timeout"


class PayloadTooLarge(GatewayError):
    status = 413
    kind = "too_large"


class UnsupportedMediaType(GatewayError):
    status = 415
    kind = "unsupported_media_type"


class RateLimited(GatewayError):
    status = 429
    kind = "rate_limited"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        should_retry: bool | None = None,
        code: str | None = "rate_limit_exceeded",
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after
        self.should_retry = should_retry


class ServiceUnavailable(GatewayError):
    status = 503
    kind = "unavailable"

    def __init__(self, message: str, *, retry_after: float | None = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ProviderError(SluiceError):
    """An upstream provider failed. ``kind`` is normalised; ``upstream_status`` is what it sent."""

    source: ErrorSource = "provider"
    kind: ProviderErrorKind

    def __init__(
        self,
        kind: ProviderErrorKind,
        message: str,
        *,
        provider: str,
        upstream_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        if kind not in PROVIDER_ERROR_KINDS:
            raise ValueError(f"unknown provider error kind {kind!r}")
        super().__init__(f"provider '{provider}' failed: {message}")
        self.kind = kind
        self.provider = provider
        self.upstream_status = upstream_status
        self.status = _KIND_STATUS[kind]
        self.retry_after = retry_after
        self.code = kind

    @property
    def retryable(self) -> bool:
        return self.kind in _RETRYABLE_KINDS


class GuardrailUnavailable(ServiceUnavailable):
    """A guardrail errored or timed out and its policy fails closed (no ``on_error: allow``)."""

    kind = "guardrail_unavailable"

    def __init__(self, guardrail: str) -> None:
        super().__init__(f"guardrail '{guardrail}' is unavailable; the request was refused (fail closed)")
        self.code = "guardrail_unavailable"
        self.guardrail = guardrail


class GuardrailBlocked(GatewayError):
    """A guardrail refused the request (``direction`` input: 400) or the answer (output: 502).

    ``detail`` names what was found (entity types and counts, a score, a schema path), never the
    matched text."""

    kind = "guardrail_blocked"

    def __init__(self, guardrail: str, direction: str, detail: str) -> None:
        where = "the request" if direction == "input" else "the answer"
        super().__init__(f"guardrail '{guardrail}' blocked {where}: {detail}", code="guardrail_blocked")
        self.status = 400 if direction == "input" else 502
        self.guardrail = guardrail
        self.direction = direction
