"""The facade the pipeline calls: admit a request against every level, settle it, report budgets.

Callers hand over plain values — the levels that apply (each with its rate limit and budget),
the request's token reservation and worst-case cost — and get back a :class:`Ticket`, or a
:class:`~sluice.errors.RateLimited` naming the limit that fired. Every ticket must be settled or
released exactly once; doing it twice is a no-op.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from urllib.parse import unquote
from zoneinfo import ZoneInfo

from sluice.config.limits import BudgetConfig, LimitsConfig
from sluice.errors import RateLimited
from sluice.limits.alerts import AlertSink, BudgetAlert
from sluice.limits.model import (
    Admission,
    BudgetCheck,
    BudgetUsage,
    Clock,
    Level,
    RateCheck,
    Settlement,
    SpendChange,
    Ticket,
    Verdict,
    from_nano,
    to_nano,
)
from sluice.limits.periods import PeriodWindow, period_window
from sluice.limits.rate_headers import format_reset, rate_headers
from sluice.limits.refusals import hard_budget_message
from sluice.limits.state import LimitState
from sluice.telemetry.metrics import METRICS

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """One budget as ``sluice budgets`` / ``GET /admin/budgets`` show it."""

    scope: str
    kind: str
    name: str
    period: str
    limit_usd: Decimal
    spent_usd: Decimal
    reserved_usd: Decimal
    period_start: datetime
    resets_at: datetime

    @property
    def remaining_usd(self) -> Decimal:
        return max(_ZERO, self.limit_usd - self.spent_usd - self.reserved_usd)

    def to_dict(self) -> dict[str, str]:
        return {
            "scope": self.scope,
            "kind": self.kind,
            "name": self.name,
            "period": self.period,
            "limit_usd": str(self.limit_usd),
            "spent_usd": str(self.spent_usd),
            "reserved_usd": str(self.reserved_usd),
            "remaining_usd": str(self.remaining_usd),
            "period_start": self.period_start.isoformat(),
            "resets_at": self.resets_at.isoformat(),
        }


class Limiter:
    def __init__(
        self,
        state: LimitState,
        config: LimitsConfig | None = None,
        *,
        prefix: str = "sluice:",
        clock: Clock = time.time,
        alerts: AlertSink | None = None,
    ) -> None:
        self.state = state
        self.config = config or LimitsConfig()
        self._tz = ZoneInfo(self.config.timezone)
        self._week_start = 0 if self.config.week_start == "monday" else 6
        self._prefix = prefix
        self._clock = clock
        self._alerts = alerts
        # The current period of each kind, reused until it ends (computing one costs µs).
        self._windows: dict[str, PeriodWindow] = {}
        # Ticket ids: a random per-process prefix and a counter are unique across replicas.
        self._ids = itertools.count()
        # Spend per budget key as last read for a refusal's message: at most one read a second
        # per budget, however many requests a spent budget refuses.
        self._refused: dict[str, tuple[float, asyncio.Future[list[BudgetUsage]]]] = {}
        self._id_prefix = os.urandom(6).hex()
        #: id(level) -> (level, its check); the level is kept, so its id cannot be reused meanwhile.
        self._rate_checks: dict[int, tuple[Level, RateCheck]] = {}

    # ------------------------------------------------------------------ keys

    def rate_key(self, level: Level) -> str:
        return f"{self._prefix}rl:{level.scope}"

    def _rate_check(self, level: Level) -> RateCheck:
        """A level's check, made once per level object (callers reuse their levels)."""
        cached = self._rate_checks.get(id(level))
        if cached is not None and cached[0] is level:
            return cached[1]
        rate = level.rate
        assert rate is not None
        check = RateCheck(self.rate_key(level), rate.rpm, rate.tpm, rate.concurrent)
        if len(self._rate_checks) >= 100_000:
            self._rate_checks.clear()
        self._rate_checks[id(level)] = (level, check)
        return check

    def window(self, budget: BudgetConfig, now: float | None = None) -> PeriodWindow:
        at = self._clock() if now is None else now
        win = self._windows.get(budget.period)
        if win is None or not win.start_ts <= at < win.end_ts:
            win = period_window(at, budget.period, self._tz, week_start=self._week_start)
            self._windows[budget.period] = win
        return win

    def budget_check(self, level: Level, budget: BudgetConfig, now: float) -> BudgetCheck:
        win = self.window(budget, now)
        key = f"{self._prefix}b:{level.scope}:{budget.period}:{win.label}"
        return BudgetCheck(key, to_nano(budget.usd), win.end_ts)

    # ------------------------------------------------------------------ admission

    async def admit(self, levels: Sequence[Level], *, tokens: int, cost: Decimal = _ZERO) -> Ticket:
        """Check and reserve at every level in one atomic step, or raise RateLimited /
        ServiceUnavailable (shared state down and the policy says fail closed)."""
        now = self._clock()
        ticket_id = f"{self._id_prefix}{next(self._ids):x}"
        rate_levels = [lv for lv in levels if lv.rate is not None and not lv.rate.empty]
        budget_levels = [lv for lv in levels if lv.budget is not None]
        if not rate_levels and not budget_levels:
            return Ticket(ticket_id, tuple(levels), None)
        rates = tuple(self._rate_check(lv) for lv in rate_levels)
        budgets = tuple(
            self.budget_check(lv, lv.budget, now) for lv in budget_levels if lv.budget is not None
        )
        adm = Admission(
            ticket_id,
            rates,
            budgets,
            max(0, tokens),
            to_nano(cost, up=True) if budgets else 0,
            now,
            self.config.lease_s,
        )
        verdict = await self.state.admit(adm)
        if not verdict.admitted:
            usage = await self._refused_usage(verdict, adm)
            raise self._refusal(verdict, rate_levels, budget_levels, adm, usage)
        return Ticket(
            ticket_id,
            tuple(levels),
            adm,
            backend=verdict.backend,
            headers=rate_headers(rates, verdict.rates),
        )

    async def _refused_usage(self, verdict: Verdict, adm: Admission) -> BudgetUsage | None:
        """For a hard budget refusal (off the admitted path): what is spent and reserved, so the
        message can give the numbers; None if the state cannot say."""
        if verdict.failed_kind != "budget" or not verdict.hard:
            return None
        check = adm.budgets[verdict.failed_index]
        seen = self._refused.get(check.key)
        if seen is None or adm.now - seen[0] >= 1.0:  # one read shared by every refusal meanwhile
            if len(self._refused) >= 1024:
                self._refused.clear()
            seen = (adm.now, asyncio.ensure_future(self.state.usage([check], adm.now)))
            self._refused[check.key] = seen
        try:
            [usage] = await asyncio.shield(seen[1])
        except Exception:  # the refusal stands without the numbers
            return None
        return usage

    def _refusal(
        self, verdict: Verdict, rate_levels: list[Level], budget_levels: list[Level], adm: Admission,
        usage: BudgetUsage | None = None,
    ) -> RateLimited:  # fmt: skip
        wait = math.ceil(verdict.retry_after_s * 1000) / 1000
        failed = (budget_levels if verdict.failed_kind == "budget" else rate_levels)[verdict.failed_index]
        METRICS.limit_refused(failed.kind, verdict.failed_kind or "other")
        if verdict.failed_kind == "budget":
            level = budget_levels[verdict.failed_index]
            assert level.budget is not None
            return self._budget_refusal(level, level.budget, verdict, adm, usage)
        level = rate_levels[verdict.failed_index]
        assert level.rate is not None
        rate = level.rate
        if verdict.failed_kind == "rpm":
            what, header = f"{rate.rpm} requests/min", ("requests", rate.rpm)
        elif verdict.failed_kind == "tpm":
            what, header = f"{rate.tpm} tokens/min", ("tokens", rate.tpm)
        else:
            what, header = f"{rate.concurrent} concurrent requests", None
        if verdict.hard:
            err = RateLimited(
                f"Rate limit exceeded: {level.label}: {what}. This request needs {adm.tokens} tokens "
                "(prompt + max_tokens), more than the limit allows in a minute: lower max_tokens.",
                retry_after=None,
                should_retry=False,
            )
        else:
            err = RateLimited(
                f"Rate limit exceeded: {level.label}: {what}. Retry after {wait:g}s.", retry_after=wait
            )
        if header is not None:
            unit, limit = header
            err.headers.update(
                {
                    f"x-ratelimit-limit-{unit}": str(limit),
                    f"x-ratelimit-remaining-{unit}": "0",
                    f"x-ratelimit-reset-{unit}": format_reset(wait),
                }
            )
        return err

    def _budget_refusal(
        self, level: Level, budget: BudgetConfig, verdict: Verdict, adm: Admission,
        usage: BudgetUsage | None = None,
    ) -> RateLimited:  # fmt: skip
        win = self.window(budget, adm.now)
        what = f"{level.label} budget: ${budget.usd} {budget.period}"
        if verdict.hard:
            return RateLimited(
                hard_budget_message(what, budget, adm.cost_nano, usage, win.end.isoformat()),
                retry_after=None,
                should_retry=False,
                code="budget_exceeded",
            )
        return RateLimited(
            f"Budget busy: {what} is fully reserved by requests in flight. Retry after 1s.",
            retry_after=1.0,
            code="budget_exceeded",
        )

    # ------------------------------------------------------------------ settlement

    def settle(self, ticket: Ticket, *, tokens: int, cost: Decimal = _ZERO) -> None:
        """Release the ticket's slots and reservations; record real tokens and cost. Never raises."""
        if ticket.done:
            return
        ticket.done = True
        adm = ticket.admission
        if adm is None or ticket.backend == "none":
            return
        if not adm.budgets and all(rc.tpm is None and rc.concurrent is None for rc in adm.rates):
            # Requests/min only: the admission itself was the whole count, so there is nothing to
            # settle — and with Redis, no round trip to make.
            return
        s = Settlement(
            ticket.id,
            adm.rates,
            adm.budgets,
            adm.tokens,
            max(0, tokens),
            to_nano(cost) if adm.budgets else 0,
            self._clock(),
        )
        listener = self._spend_listener(ticket) if self._alerts is not None and adm.budgets else None
        self.state.settle(s, ticket.backend, listener)

    def release(self, ticket: Ticket) -> None:
        """The request produced nothing billable (failed before or at the upstream)."""
        self.settle(ticket, tokens=0, cost=_ZERO)

    async def extend(self, ticket: Ticket, extra: Decimal) -> bool:
        """Grow a ticket's budget reservations by ``extra`` USD if every budget has room."""
        adm = ticket.admission
        if adm is None or not adm.budgets or ticket.done:
            return True
        extra_nano = to_nano(extra, up=True)
        ok = await self.state.extend(ticket.id, adm.budgets, extra_nano, self._clock(), ticket.backend)
        if ok:
            ticket.extra_cost_nano += extra_nano
        return ok

    def _spend_listener(self, ticket: Ticket) -> _AlertCheck:
        return _AlertCheck(self, ticket)

    def _alert(self, change: SpendChange, level: Level, budget: BudgetConfig, at: float) -> None:
        limit = to_nano(budget.usd)
        if limit <= 0 or self._alerts is None:
            return
        for threshold in sorted(budget.alert_at):
            mark = limit * threshold
            if change.before < mark <= change.after:
                win = self.window(budget, at)
                self._alerts.notify(
                    BudgetAlert(
                        level.label,
                        budget.period,
                        win.start,
                        win.end,
                        threshold,
                        budget.usd,
                        from_nano(change.after),
                    )
                )

    # ------------------------------------------------------------------ reading

    async def budget_report(self, levels: Sequence[Level]) -> list[BudgetStatus]:
        """Spend, reservations and reset time of each level's budget in the current period."""
        now = self._clock()
        pairs = [(lv, lv.budget) for lv in levels if lv.budget is not None]
        checks = [self.budget_check(lv, b, now) for lv, b in pairs]
        usage = await self.state.usage(checks, now) if checks else []
        out: list[BudgetStatus] = []
        for (lv, budget), u in zip(pairs, usage, strict=True):
            win = self.window(budget, now)
            out.append(
                BudgetStatus(
                    lv.label,
                    lv.kind,
                    lv.name,
                    budget.period,
                    budget.usd,
                    from_nano(u.spent_nano),
                    from_nano(u.reserved_nano),
                    win.start,
                    win.end,
                )
            )
        return out

    async def user_levels(self, budget: BudgetConfig) -> list[Level]:
        """End users with a budget state in the current period (they are not listed anywhere else)."""
        label = self.window(budget).label
        prefix = f"{self._prefix}b:user:"
        suffix = f":{budget.period}:{label}"
        names = sorted(
            unquote(key[len(prefix) : -len(suffix)])
            for key in await self.state.budget_keys(prefix)
            if key.endswith(suffix)
        )
        return [Level("user", name, budget=budget) for name in names]

    async def in_flight(self, levels: Sequence[Level]) -> list[int]:
        return await self.state.in_flight([self.rate_key(lv) for lv in levels], self._clock())

    async def flush(self) -> None:
        await self.state.flush()

    async def close(self) -> None:
        await self.state.close()


class _AlertCheck:
    """Maps a settlement's spend changes back to the ticket's budgets and fires crossed thresholds."""

    __slots__ = ("_limiter", "_ticket")

    def __init__(self, limiter: Limiter, ticket: Ticket) -> None:
        self._limiter = limiter
        self._ticket = ticket

    def __call__(self, changes: Sequence[SpendChange]) -> None:
        adm = self._ticket.admission
        if adm is None:
            return
        budget_levels = [lv for lv in self._ticket.levels if lv.budget is not None]
        by_key = {bc.key: lv for bc, lv in zip(adm.budgets, budget_levels, strict=True)}
        for change in changes:
            level = by_key.get(change.key)
            if level is not None and level.budget is not None:
                self._limiter._alert(change, level, level.budget, adm.now)
