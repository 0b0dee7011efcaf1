"""Policy structs for rate limits, budgets and budget alerts.

Where they sit in the policy file::

    teams.<name>.rate_limit: RateLimitConfig      teams.<name>.budget: BudgetConfig
    routes[].rate_limit: RateLimitConfig
    limits: LimitsConfig                          (providers, per-end-user defaults, timezone, ...)
    alerts: AlertsConfig                          (the webhook budget alerts are POSTed to)
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from sluice.config.secret import Secret

PositiveInt = Annotated[int, msgspec.Meta(gt=0)]
Period = Literal["daily", "weekly", "monthly"]


class RateLimitConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Requests per minute, tokens (input + output) per minute, requests in flight. None = unlimited."""

    rpm: PositiveInt | None = None
    tpm: PositiveInt | None = None
    concurrent: PositiveInt | None = None

    @property
    def empty(self) -> bool:
        return self.rpm is None and self.tpm is None and self.concurrent is None


class BudgetConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A USD budget per calendar period; ``alert_at`` are fractions of ``usd`` (0.8 = 80 %)."""

    usd: Decimal
    period: Period = "monthly"
    alert_at: list[Annotated[float, msgspec.Meta(gt=0)]] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.usd.is_finite() or self.usd < 0:
            raise ValueError("a budget's usd must be a non-negative amount")


class UserLimitsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Limits every end user (``user`` field / ``x-sluice-user``) gets, counted per team."""

    rate_limit: RateLimitConfig | None = None
    budget: BudgetConfig | None = None


class LimitsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    #: Provider-account limits (protect the organisation's quota), by provider name.
    providers: dict[str, RateLimitConfig] = msgspec.field(default_factory=dict)
    users: UserLimitsConfig | None = None
    #: Budget periods start at midnight in this IANA timezone.
    timezone: str = "UTC"
    week_start: Literal["monday", "sunday"] = "monday"
    #: Output tokens reserved when a request sets no max_tokens and the model's maximum is unknown;
    #: also the step by which a stream's reservation grows.
    default_output_tokens: PositiveInt = 4096
    #: A reservation or concurrency slot whose holder vanished (crashed replica) expires after this.
    lease_s: Annotated[float, msgspec.Meta(gt=0)] = 900.0
    #: Socket timeout for each shared-state (Redis) call; an outage is detected within it.
    state_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 0.25
    #: After an outage, how often one request probes whether the shared state is back.
    state_retry_s: Annotated[float, msgspec.Meta(gt=0)] = 1.0

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {self.timezone!r} (use an IANA name like 'Europe/Paris')"
            ) from None


class AlertsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    #: Budget threshold alerts are POSTed here as JSON (and always logged).
    webhook: Secret | None = None
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 5.0


@dataclass(frozen=True, slots=True)
class LevelLimits:
    """The limits configured for one key / team / user, as the store or policy holds them."""

    rate: RateLimitConfig | None = None
    budget: BudgetConfig | None = None

    @property
    def empty(self) -> bool:
        return (self.rate is None or self.rate.empty) and self.budget is None
