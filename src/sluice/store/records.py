"""Rows the store keeps: gateway keys, request records, spend summaries."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal, TypeAlias

GroupBy: TypeAlias = Literal["team", "key", "user", "model", "day", "provider"]
GROUP_BY_VALUES: tuple[GroupBy, ...] = ("team", "key", "user", "model", "day", "provider")


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    #: HMAC-SHA256 of the secret, hex. The secret itself is never stored.
    hash: str
    #: The first characters of the secret, for people to recognise a key in listings.
    prefix: str
    team: str
    user: str | None = None
    name: str | None = None
    models: tuple[str, ...] | None = None
    created_at: float = 0.0
    revoked_at: float | None = None
    rpm: int | None = None
    tpm: int | None = None
    concurrent: int | None = None
    budget_usd: float | None = None
    budget_period: str | None = None


@dataclass(slots=True)
class RequestRecord:
    id: str
    ts: float
    endpoint: str
    key_id: str | None
    team: str | None
    user: str | None
    tags: list[str] = field(default_factory=list)
    requested_model: str | None = None
    served_model: str | None = None
    provider: str | None = None
    route: str | None = None
    stream: bool = False
    status: int = 200
    #: "gateway" or "provider" when the request failed.
    error_source: str | None = None
    error_kind: str | None = None
    error_message: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float | None = None
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    attempts: int = 0
    #: JSON list of {provider, model, status, error_kind, latency_ms, backoff_ms, usage, estimated, cost_usd}.
    attempts_detail: str = "[]"
    note: str | None = None
    #: Why this route and model were chosen, and what routing skipped on the way.
    route_reason: str | None = None
    #: Shadow calls: the mirrored request's id, and the comparison of the two answers (JSON).
    shadow_of: str | None = None
    comparison: str | None = None
    #: The ledger: the exact cost in nano-USD (``cost_usd`` is its rounded float for reading by eye);
    #: None with tokens billed = unpriced, never $0.
    cost_nusd: int | None = None
    #: JSON list of the prices charged, one per billed attempt: {model, provider, source, effective_from, rates}.
    prices: str | None = None
    #: Some billed tokens were estimated (a stream cut before the provider reported its usage).
    cost_estimated: bool = False
    #: The policy the request was served under (a hash of the policy file; hot reload changes it).
    policy_version: str | None = None
    #: JSON list of guardrail verdicts: {guardrail, type, direction, action, outcome, counts, ...}.
    guardrails: str | None = None
    #: ``logging.payloads``: bodies, redacted by every PII and secrets detector unless ``full``.
    request_body: str | None = None
    response_body: str | None = None
    #: Answered by the response cache: "exact" or "semantic" (cost 0); and what it would have cost.
    cache: str | None = None
    saved_usd: float | None = None


@dataclass(frozen=True, slots=True)
class ShadowRow:
    """One shadow call as ``sluice shadow report`` reads it."""

    id: str
    ts: float
    route: str | None
    shadow_of: str
    status: int
    cost_usd: float | None
    comparison: str | None


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """One request as reconciliation reads it: each billed attempt is in ``attempts_detail``."""

    id: str
    ts: float
    team: str | None
    key_id: str | None
    shadow_of: str | None
    status: int
    attempts_detail: str


@dataclass(frozen=True, slots=True)
class SpendRow:
    group: str | None
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    #: Exact: the sum of the records' nano-USD ledger values.
    cost_usd: Decimal
    #: Requests that billed tokens of a model with no price (their cost is unknown, not $0).
    unpriced: int = 0
    #: What cache hits saved (their answers' cost when they were first produced).
    saved_usd: float = 0.0
