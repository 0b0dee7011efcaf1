"""What one request carries through the pipeline, and the middleware signature."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from sluice.config.limits import LevelLimits
from sluice.config.residency import Requirements
from sluice.errors import SluiceError
from sluice.schema.chat import ChatChunk, ChatRequest, ChatResponse, Usage
from sluice.schema.embeddings import EmbeddingRequest, EmbeddingResponse

Dialect: TypeAlias = Literal["openai", "anthropic", "responses"]
Endpoint: TypeAlias = Literal["chat", "embeddings"]


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: a gateway key and what it may do."""

    key_id: str
    team: str
    user: str | None
    name: str | None
    #: Models this key may use (key allow-list ∩ team allow-list); None = all configured models.
    models: frozenset[str] | None
    #: The key's own rate limit and budget, if it has any.
    limits: LevelLimits | None = None

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models


@dataclass(slots=True)
class Attempt:
    """One upstream attempt, for the request record."""

    provider: str
    model: str
    status: int | None = None
    error_kind: str | None = None
    latency_ms: float = 0.0
    #: The wait (backoff, retry-after) before this attempt began.
    backoff_ms: float = 0.0
    #: What the provider billed for this attempt: its reported usage, or for a stream cut after its
    #: first chunk an estimate of what was relayed (``estimated``). None = nothing billed.
    usage: Usage | None = None
    estimated: bool = False
    #: Filled in by accounting from ``usage`` and the price in force: the exact cost in nano-USD
    #: (None = unpriced). The price it was charged at is in the record's ``prices``, in attempt order.
    cost_nusd: int | None = None
    #: The provider's own id for this call (its request-id header, else the answer's id), so the
    #: ledger joins exactly with a provider's usage export.
    upstream_id: str | None = None


class ChunkStream:
    """A streamed answer: canonical chunks plus what routing learnt before the first byte.

    Middlewares wrap ``chunks`` with their own async generators (count tokens, settle budgets);
    ``aclose`` must reach the innermost generator so the upstream connection is released.
    """

    __slots__ = ("chunks",)

    def __init__(self, chunks: AsyncIterator[ChatChunk]) -> None:
        self.chunks = chunks

    async def aclose(self) -> None:
        aclose = getattr(self.chunks, "aclose", None)
        if aclose is not None:
            await aclose()


Result: TypeAlias = ChatResponse | ChunkStream | EmbeddingResponse


@dataclass(slots=True)
class RequestContext:
    request_id: str
    dialect: Dialect
    endpoint: Endpoint
    #: The raw credential the caller presented. Only auth reads it; never logged or stored.
    presented_key: str | None
    chat: ChatRequest | None = None
    embedding: EmbeddingRequest | None = None
    requested_model: str = ""
    user: str | None = None
    tags: tuple[str, ...] = ()
    task: str | None = None
    principal: Principal | None = None
    started: float = field(default_factory=time.perf_counter)
    started_wall: float = field(default_factory=time.time)
    # Filled in by routing:
    route: str | None = None
    #: Why this route and model: the matched conditions, complexity verdict, skipped targets.
    route_reason: str | None = None
    #: The model the route chose to serve the request (before fallbacks).
    routed_model: str | None = None
    provider: str | None = None
    served_model: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    # Filled in as the answer is produced:
    usage: Usage | None = None
    first_token_at: float | None = None
    finished_at: float | None = None
    status: int = 200
    error: SluiceError | None = None
    note: str | None = None
    #: Shadow calls: the id of the request this one mirrored, and the comparison (JSON).
    shadow_of: str | None = None
    comparison: str | None = None
    #: Guardrail verdicts (JSON list: name, action, outcome, counts by entity; never matched text).
    guardrails: str | None = None
    #: ``logging.payloads``: the request and response bodies (redacted unless ``full``).
    request_body: str | None = None
    response_body: str | None = None
    #: Extra headers for the caller's response (x-ratelimit-*, ...), set by middlewares.
    response_headers: dict[str, str] = field(default_factory=dict)
    #: The caller's dialect's own state for this request, set when it parses the body (the
    #: Responses API's response frame and conversation); nothing below the server reads it.
    dialect_state: object = None
    #: Residency requirements the request itself stated (x-sluice-require / metadata.require).
    require: Requirements = ()
    #: The caller's W3C ``traceparent`` header, if any: continued by tracing, passed upstream.
    traceparent: str | None = None
    #: Tracing's state for this request (``telemetry.tracing.RequestTrace``); None when untraced.
    trace: object | None = None
    #: The caller's cache directives (``Cache-Control``, ``x-sluice-cache-threshold``), raw.
    cache_control: str | None = None
    cache_threshold: str | None = None
    #: Set by the cache on a hit ("exact" | "semantic"), with what the answer would have cost.
    cache: str | None = None
    saved_usd: float | None = None

    @property
    def stream(self) -> bool:
        return self.chat is not None and self.chat.stream


CallNext: TypeAlias = Callable[[RequestContext], Awaitable[Result]]
Middleware: TypeAlias = Callable[[RequestContext, CallNext], Awaitable[Result]]
