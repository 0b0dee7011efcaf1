"""The provider adapter protocols. Adapters are pure translators: no I/O, no transport, no store.

An adapter is made once per configured provider (``registry.create_adapter``) and holds that
provider's base URL and credential. ``routing`` hands its requests to ``transport`` and its
responses back to the adapter.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from typing import Any, Final, Protocol, runtime_checkable

import msgspec

from sluice.errors import ProviderError, ProviderErrorKind
from sluice.schema.chat import ChatChunk, ChatRequest, ChatResponse
from sluice.schema.embeddings import EmbeddingRequest, EmbeddingResponse
from sluice.schema.upstream import UpstreamRequest, UpstreamResponse

#: A model's maximum output tokens, when known (from the price book); injected, so adapters stay pure.
MaxOutput = Callable[[str], int | None]


@dataclass(frozen=True, slots=True)
class Target:
    """One place a model can be served: a configured provider and the model name it knows."""

    provider: str
    model: str
    weight: float = 1.0
    timeout_s: float | None = None


class StreamDecoder(Protocol):
    """Stateful decoder of one upstream stream into canonical chunks.

    ``feed`` takes the bytes as they arrive (any split) and returns the chunks completed by them.
    It raises :class:`ProviderError` on an in-stream error event. ``finish`` is called at end of
    body: it returns any chunk still pending and raises ``ProviderError(kind="bad_response")`` if
    the stream ended before the provider said it was complete (a cut stream must never look whole).
    """

    def feed(self, data: bytes) -> list[ChatChunk]: ...

    def finish(self) -> list[ChatChunk]: ...


class ChatAdapter(Protocol):
    """Translate canonical chat requests to one provider's wire format and back.

    Every method is pure and cheap. ``parse_response`` raises ``ProviderError(kind="bad_response")``
    on a body it cannot read. ``parse_error`` is called for any non-2xx status and never raises.
    Usage in results is normalised to OpenAI's convention (prompt_tokens includes cached tokens).
    """

    name: str
    type: str

    def build_request(self, req: ChatRequest, target: Target) -> UpstreamRequest: ...

    def parse_response(self, resp: UpstreamResponse, req: ChatRequest) -> ChatResponse: ...

    def stream_decoder(self, req: ChatRequest) -> StreamDecoder: ...

    def parse_error(self, resp: UpstreamResponse) -> ProviderError: ...


@runtime_checkable
class EmbeddingAdapter(Protocol):
    """Optional: providers that serve embeddings implement this as well."""

    def build_embedding_request(self, req: EmbeddingRequest, target: Target) -> UpstreamRequest: ...

    def parse_embedding_response(
        self, resp: UpstreamResponse, req: EmbeddingRequest
    ) -> EmbeddingResponse: ...


#: Response headers in which providers name a request (OpenAI and Azure, Anthropic, Bedrock, Azure APIM).
_REQUEST_ID_HEADERS: Final = ("x-request-id", "request-id", "x-amzn-requestid", "apim-request-id")


def upstream_request_id(headers: dict[str, str], answer_id: str | None = None) -> str | None:
    """The provider's id for one call: its request-id header, else the id in its answer."""
    for name in _REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value[:200]
    return answer_id[:200] if answer_id else None


#: The longest wait an upstream's ``retry-after`` is taken at (a day); more is read as this.
MAX_RETRY_AFTER_S = 86_400.0


def parse_retry_after(headers: dict[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, or ``retry-after`` as seconds or an HTTP-date
    (RFC 9110 §10.2.3). Whatever an upstream sends, the answer is None or a finite number in
    [0, MAX_RETRY_AFTER_S]: ``inf`` and ``1e400`` are the longest wait, ``nan`` and garbage none."""
    ms = headers.get("retry-after-ms")
    if ms:
        wait = _finite_seconds(ms)
        if wait is not None:
            return _clamp(wait / 1000.0)
    raw = headers.get("retry-after")
    if not raw:
        return None
    wait = _finite_seconds(raw)
    if wait is not None:
        return _clamp(wait)
    return _http_date_wait(raw, now)


def _finite_seconds(text: str) -> float | None:
    text = text.strip()
    if not text or len(text) > 32:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    if math.isnan(value):
        return None
    return value if math.isfinite(value) else math.copysign(MAX_RETRY_AFTER_S * 1000.0, value)


def _http_date_wait(text: str, now: float | None) -> float | None:
    if len(text) > 64:
        return None
    try:
        when = email.utils.parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # an HTTP-date is always GMT
        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    try:
        return _clamp(when.timestamp() - current)
    except (OverflowError, OSError, ValueError):
        return None


def _clamp(wait: float) -> float:
    return min(max(0.0, wait), MAX_RETRY_AFTER_S)


def scrub(text: str, secret: str | None, limit: int = 500) -> str:
    """Shorten an upstream message and remove the provider credential if it was echoed back."""
    if secret and len(secret) >= 8 and secret in text:
        text = text.replace(secret, "[redacted]")
    return text if len(text) <= limit else text[:limit] + "…"


def kind_for_status(status: int) -> ProviderErrorKind:
    """The normalised error kind an HTTP status means when the body says nothing more precise."""
    if status in (401, 403):
        return "auth"
    if status == 404:
        return "not_found"
    if status in (408, 504):
        return "timeout"
    if status == 413:
        return "context_window"
    if status == 429:
        return "rate_limited"
    if status in (503, 529):
        return "overloaded"
    if 400 <= status < 500:
        return "bad_request"
    return "server"


def upstream_error(
    kind: ProviderErrorKind, message: str, resp: UpstreamResponse, provider: str, secret: str | None
) -> ProviderError:
    """The ProviderError for a non-2xx answer: the upstream's own words (scrubbed of the provider
    credential), except for auth failures, which never echo anything about our credentials."""
    if kind == "auth":
        text = f"the provider rejected the gateway's credentials (HTTP {resp.status})"
    else:
        text = scrub(message or f"HTTP {resp.status}", secret)
    return ProviderError(
        kind,
        text,
        provider=provider,
        upstream_status=resp.status,
        retry_after=parse_retry_after(resp.headers),
    )


def arguments_object(arguments: str) -> dict[str, Any]:
    """A tool call's JSON-string arguments as the object other providers want (``{}`` if unreadable)."""
    try:
        value = msgspec.json.decode(arguments) if arguments else {}
    except msgspec.DecodeError:
        return {}
    return value if isinstance(value, dict) else {"value": value}


def append_turn(
    turns: list[dict[str, Any]], role: str, items: list[dict[str, Any]], key: str = "content"
) -> None:
    """Add to the conversation, merging into the previous turn when it has the same role
    (Anthropic, Gemini and Bedrock want strictly alternating roles)."""
    if turns and turns[-1]["role"] == role:
        turns[-1][key].extend(items)
    else:
        turns.append({"role": role, key: items})
