"""The plain values limits are computed on: levels, checks, admissions, verdicts, tickets.

Money crosses into state backends as integer nano-dollars (1e-9 USD): exact, and small enough for
Redis's Lua doubles up to $9 million per budget. Reservations round up, spend rounds to nearest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal
from typing import Literal, TypeAlias
from urllib.parse import quote

from sluice.config.limits import BudgetConfig, LevelLimits, RateLimitConfig

__all__ = ["LevelLimits"]

Clock: TypeAlias = Callable[[], float]
LevelKind: TypeAlias = Literal["provider", "route", "team", "key", "user"]
LimitKind: TypeAlias = Literal["rpm", "tpm", "concurrent", "budget"]

WINDOW_S = 60.0
NANO = Decimal(1_000_000_000)


def to_nano(usd: Decimal, *, up: bool = False) -> int:
    return int((usd * NANO).to_integral_value(ROUND_CEILING if up else ROUND_HALF_EVEN))


def from_nano(nano: int) -> Decimal:
    return Decimal(nano) / NANO


@dataclass(frozen=True, slots=True)
class Level:
    """One level of the hierarchy a request must pass, with the limits that apply at it."""

    kind: LevelKind
    name: str
    rate: RateLimitConfig | None = None
    budget: BudgetConfig | None = None
    #: How messages name it when ``name`` is an opaque id (a key's id → its name).
    display: str | None = None
    #: Stable, separator-safe identifier used in state keys.
    scope: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scope", f"{self.kind}:{quote(self.name, safe='')}")

    @property
    def label(self) -> str:
        return f"{self.kind} {self.display or self.name}"


@dataclass(frozen=True, slots=True)
class RateCheck:
    key: str
    rpm: int | None
    tpm: int | None
    concurrent: int | None


@dataclass(frozen=True, slots=True)
class BudgetCheck:
    key: str
    limit_nano: int
    #: When the period ends (Unix seconds): state may drop the key some time after.
    expires_at: float


@dataclass(slots=True)  # made per request: frozen would cost a setattr per field
class Admission:
    """Everything a backend needs to check and reserve, across all levels, in one step."""

    ticket_id: str
    rates: tuple[RateCheck, ...]
    budgets: tuple[BudgetCheck, ...]
    tokens: int
    cost_nano: int
    now: float
    lease_s: float


@dataclass(slots=True)  # made per request: frozen would cost a setattr per field
class RateStatus:
    """After an admission: how much of each per-minute limit is left at one level."""

    requests_remaining: int | None
    requests_reset_s: float
    tokens_remaining: int | None
    tokens_reset_s: float


@dataclass(slots=True)  # made per request: frozen would cost a setattr per field
class Verdict:
    admitted: bool
    #: For a refusal: which check failed (index into rates, or into budgets for "budget").
    failed_index: int = -1
    failed_kind: LimitKind | None = None
    retry_after_s: float = 0.0
    #: The refusal cannot resolve by waiting a little (budget spent, request bigger than the limit).
    hard: bool = False
    rates: tuple[RateStatus, ...] = ()
    #: Which state answered: "shared", "local", or "none" (nothing recorded: fail-open outage).
    backend: str = "local"


@dataclass(frozen=True, slots=True)
class SpendChange:
    """A settlement moved a budget's spend from ``before`` to ``after`` (nano-dollars)."""

    key: str
    before: int
    after: int


@dataclass(slots=True)  # made per request: frozen would cost a setattr per field
class Settlement:
    ticket_id: str
    rates: tuple[RateCheck, ...]
    budgets: tuple[BudgetCheck, ...]
    tokens_reserved: int
    tokens_actual: int
    cost_actual_nano: int
    now: float


@dataclass(frozen=True, slots=True)
class BudgetUsage:
    spent_nano: int
    reserved_nano: int


@dataclass(slots=True)
class Ticket:
    """What an admitted request holds until it is settled or released (exactly once)."""

    id: str
    levels: tuple[Level, ...]
    admission: Admission | None
    #: Which backend admitted it: "shared" (Redis) or "local" (memory / outage fallback); "" = none.
    backend: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    extra_cost_nano: int = 0
    done: bool = False

    @property
    def tokens(self) -> int:
        return self.admission.tokens if self.admission is not None else 0

    @property
    def cost_reserved_nano(self) -> int:
        base = self.admission.cost_nano if self.admission is not None else 0
        return base + self.extra_cost_nano

    @property
    def has_budget(self) -> bool:
        return self.admission is not None and bool(self.admission.budgets)
