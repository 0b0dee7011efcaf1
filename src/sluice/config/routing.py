"""Policy structs for routing and resilience.

Where they sit in the policy file::

    routing: RoutingConfig            defaults: retries, fallback kinds, breakers, retry budget
    routes: [RouteConfig, ...]        matched top-down, first match wins
    models.<name>.fallback: [...]     a model's own fallback models (after the route's fallback)

Cross-references (unknown models, fallback cycles, weights) are checked in ``routing_checks``.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

from sluice.config.cache import RouteCacheConfig
from sluice.config.limits import RateLimitConfig
from sluice.config.residency import RequireSpec

PositiveInt = Annotated[int, msgspec.Meta(gt=0)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]
Fraction = Annotated[float, msgspec.Meta(ge=0, le=1)]

#: Error kinds another attempt may fix. 400/401/403/404/422 (bad_request, auth, not_found,
#: content_filter) are never retried and never fall back.
RetryKind = Literal["rate_limited", "overloaded", "timeout", "server", "connection", "bad_response"]
#: Kinds that move a request on to its next target or model. ``context_window`` moves only to a
#: target with a larger context window.
FallbackKind = Literal[
    "rate_limited", "overloaded", "timeout", "server", "connection", "bad_response", "context_window"
]
Strategy = Literal["fallback", "weighted", "least_latency", "least_busy", "cheapest", "adaptive"]

RETRY_KINDS: Final[tuple[RetryKind, ...]] = (
    "rate_limited", "overloaded", "timeout", "server", "connection", "bad_response",
)  # fmt: skip
FALLBACK_KINDS: Final[tuple[FallbackKind, ...]] = (*RETRY_KINDS, "context_window")

OneOrMany = str | list[str]


class BackoffConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Delay before retry round ``n`` (1-based): ``min(max_s, base_s * multiplier**(n-1))``, of which
    the fraction ``jitter`` is random; never shorter than the upstream's ``retry-after``."""

    base_s: NonNegativeFloat = 0.5
    max_s: NonNegativeFloat = 8.0
    multiplier: Annotated[float, msgspec.Meta(ge=1)] = 2.0
    jitter: Fraction = 0.5


class RetryConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    #: Upstream attempts per request, retries and fallbacks together: the hard bound.
    max_attempts: PositiveInt = 4
    #: Extra rounds over the targets that failed with a ``retry_on`` kind, after a backoff.
    #: Fallback to the next target comes first; retries come once every target was tried.
    retries: NonNegativeInt = 1
    retry_on: list[RetryKind] = msgspec.field(default_factory=lambda: list(RETRY_KINDS))
    backoff: BackoffConfig = msgspec.field(default_factory=BackoffConfig)
    #: An upstream asking to wait longer than this (``retry-after``) is not retried.
    max_retry_after_s: NonNegativeFloat = 10.0


class BreakerConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Per target (provider + upstream model), from real traffic only: no health pings."""

    #: Consecutive failures that open the breaker.
    failures: PositiveInt = 5
    #: Or: this share of failures among the last ``window`` outcomes (None = off).
    error_ratio: Annotated[float, msgspec.Meta(gt=0, le=1)] | None = 0.5
    window: PositiveInt = 20
    #: How long an open breaker skips its target; then one probe request decides.
    cooldown_s: NonNegativeFloat = 30.0


class RetryBudgetConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Extra attempts (retries and fallbacks) in flight may be at most ``ratio`` of the requests being
    routed, but ``min_in_flight`` are always allowed (so a quiet gateway can still retry)."""

    ratio: Fraction = 0.2
    min_in_flight: NonNegativeInt = 3


class RoutingConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``routing:`` — defaults for every route, and for requests no route matches."""

    retry: RetryConfig = msgspec.field(default_factory=RetryConfig)
    fallback_on: list[FallbackKind] = msgspec.field(default_factory=lambda: list(FALLBACK_KINDS))
    #: Streams: the longest wait for the first chunk of an attempt (None = the attempt's timeout).
    first_token_timeout_s: PositiveFloat | None = None
    breaker: BreakerConfig = msgspec.field(default_factory=BreakerConfig)
    retry_budget: RetryBudgetConfig = msgspec.field(default_factory=RetryBudgetConfig)
    #: Weight of the newest sample in each target's moving average of latency (least_latency).
    latency_alpha: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.3
    #: least_latency: share of requests sent first to the target measured longest ago, so a target
    #: that was slow and recovered is measured again.
    latency_refresh: Fraction = 0.05
    #: least_latency: an estimate older than this counts as none (the target is measured again).
    latency_max_age_s: PositiveFloat = 60.0
    #: Guardrails applied to every request, before the matched route's own list.
    guardrails: list[str] = msgspec.field(default_factory=list)


class RouteMatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Every condition given must hold; a list means any of its values. ``tags``: all of them."""

    team: OneOrMany | None = None
    key: OneOrMany | None = None
    user: OneOrMany | None = None
    model: OneOrMany | None = None
    task: OneOrMany | None = None
    tags: list[str] | None = None


class ComplexityConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Send short, simple prompts to ``small`` and long or tool-using ones to ``large``."""

    small: str
    large: str
    #: Estimated prompt tokens (≈ characters / 4) above which a request is "long".
    max_small_tokens: PositiveInt = 1000
    #: Requests that offer tools go to ``large``.
    tools_to_large: bool = True
    #: Conversations with more messages than this go to ``large`` (None = no limit).
    max_small_messages: PositiveInt | None = None


class ShadowConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Mirror ``percent`` of the route's requests to ``model``; compared, recorded, never returned."""

    model: str
    percent: Annotated[float, msgspec.Meta(gt=0, le=100)]
    #: Shadow calls in flight at once for this route; beyond it, requests are not mirrored.
    max_in_flight: PositiveInt = 16


class RouteConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: str
    match: RouteMatch = msgspec.field(default_factory=RouteMatch)
    #: The model that serves the route (None = the model the caller asked for).
    model: str | None = None
    #: Instead of ``model``: pick a small or a large model by the request's size.
    complexity: ComplexityConfig | None = None
    #: Models tried, in order, when the route's model fails with a ``fallback_on`` kind.
    fallback: list[str] = msgspec.field(default_factory=list)
    fallback_on: list[FallbackKind] | None = None
    retry: RetryConfig | None = None
    #: The whole request's time limit (None = server.request_timeout_s).
    timeout_s: PositiveFloat | None = None
    first_token_timeout_s: PositiveFloat | None = None
    rate_limit: RateLimitConfig | None = None
    cache: RouteCacheConfig | None = None
    #: Names of guardrails applied to the route's requests.
    guardrails: list[str] = msgspec.field(default_factory=list)
    shadow: ShadowConfig | None = None
    #: Provider labels every target of the route must have, fallbacks and shadows included.
    require: RequireSpec = msgspec.field(default_factory=dict)


def as_tuple(value: OneOrMany | None) -> tuple[str, ...] | None:
    """A match condition as a tuple of accepted values (None = no condition)."""
    if value is None:
        return None
    return (value,) if isinstance(value, str) else tuple(value)
