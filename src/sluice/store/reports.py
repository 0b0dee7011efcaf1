"""Scheduled spend reports: each team's spend, top models and change on the previous period.

``last_period`` names the period that ended most recently (UTC: a day, an ISO week from Monday, a
calendar month); ``build_report`` is pure. ``ReportScheduler`` sends each period's report once,
after the period ends (with a grace for records still being written): a replica claims the period
in the store first, so with many replicas exactly one sends it, and a period missed while every
replica was down is sent at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

import msgspec

log = logging.getLogger("sluice.reports")
UTC = datetime.UTC
TOP_MODELS = 5


@dataclass(frozen=True, slots=True)
class TeamModelSpend:
    team: str | None
    model: str | None
    requests: int
    #: Exact, from the ledger's nano-dollars.
    cost_usd: Decimal
    unpriced: int


@dataclass(frozen=True, slots=True)
class Period:
    name: str  # daily | weekly | monthly
    start: datetime.datetime
    end: datetime.datetime
    previous_start: datetime.datetime

    @property
    def key(self) -> str:
        return f"{self.name}:{self.start.date().isoformat()}"


def last_period(name: str, now: float) -> Period:
    """The ``name`` period that ended most recently before ``now``, and the one before it."""
    today = datetime.datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if name == "daily":
        end = today
        start = end - datetime.timedelta(days=1)
        return Period(name, start, end, start - datetime.timedelta(days=1))
    if name == "weekly":
        end = today - datetime.timedelta(days=today.weekday())
        start = end - datetime.timedelta(days=7)
        return Period(name, start, end, start - datetime.timedelta(days=7))
    if name == "monthly":
        end = today.replace(day=1)
        start = (end - datetime.timedelta(days=1)).replace(day=1)
        return Period(name, start, end, (start - datetime.timedelta(days=1)).replace(day=1))
    raise ValueError(f"unknown period {name!r} (daily, weekly or monthly)")


def next_boundary(name: str, now: float) -> float:
    """When the current ``name`` period ends."""
    if name == "monthly":
        first = datetime.datetime.fromtimestamp(now, UTC).replace(
            day=1, hour=0, minute=0, second=0, microsecond=0
        )
        return (first + datetime.timedelta(days=32)).replace(day=1).timestamp()
    ahead = {"daily": 1, "weekly": 7}[name]
    return last_period(name, now + ahead * 86400).end.timestamp()


def build_report(
    period: Period, now: Sequence[TeamModelSpend], before: Sequence[TeamModelSpend]
) -> dict[str, object]:
    """The report as JSON-ready data; amounts are exact decimal strings."""
    previous: dict[str | None, Decimal] = {}
    for row in before:
        previous[row.team] = previous.get(row.team, Decimal(0)) + row.cost_usd
    teams: dict[str | None, list[TeamModelSpend]] = {}
    for row in now:
        teams.setdefault(row.team, []).append(row)
    out = []
    for team, rows in sorted(teams.items(), key=lambda kv: -sum(r.cost_usd for r in kv[1])):
        spent = sum((r.cost_usd for r in rows), Decimal(0))
        prev = previous.get(team, Decimal(0))
        change = None if prev == 0 else float((spent - prev) / prev * 100)
        top = sorted(rows, key=lambda r: r.cost_usd, reverse=True)[:TOP_MODELS]
        out.append({
            "team": team or "-", "spent_usd": _usd(spent), "requests": sum(r.requests for r in rows),
            "unpriced_requests": sum(r.unpriced for r in rows), "previous_usd": _usd(prev),
            "change_pct": None if change is None else round(change, 1),
            "top_models": [{"model": r.model or "-", "spent_usd": _usd(r.cost_usd), "requests": r.requests}
                           for r in top],
        })  # fmt: skip
    total = sum((r.cost_usd for r in now), Decimal(0))
    return {
        "type": "spend_report", "period": period.name, "from": period.start.isoformat(),
        "until": period.end.isoformat(), "total_usd": _usd(total), "teams": out,
    }  # fmt: skip


def report_text(report: dict[str, object]) -> str:
    lines = [f"Spend report ({report['period']}) {report['from'][:10]} to {report['until'][:10]}: "  # type: ignore[index]
             f"${report['total_usd']}"]  # fmt: skip
    for t in report["teams"]:  # type: ignore[attr-defined]
        change = "new" if t["change_pct"] is None else f"{t['change_pct']:+.1f}%"
        models = ", ".join(f"{m['model']} ${m['spent_usd']}" for m in t["top_models"])
        lines.append(f"  {t['team']}: ${t['spent_usd']} ({t['requests']} requests, {change}); top: {models}")
    return "\n".join(lines)


def _usd(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


class ReportStore(Protocol):
    async def spend_by_team_model(self, start: float, end: float) -> list[TeamModelSpend]: ...

    async def claim_report(self, key: str, at: float) -> bool:
        """True for the one caller that claims ``key`` first (the one that sends it)."""
        ...

    async def unclaim_report(self, key: str) -> None:
        """Give a claim back (its send failed), so the next attempt sends it."""
        ...


async def make_report(store: ReportStore, period: Period) -> dict[str, object]:
    now = await store.spend_by_team_model(period.start.timestamp(), period.end.timestamp())
    before = await store.spend_by_team_model(period.previous_start.timestamp(), period.start.timestamp())
    return build_report(period, now, before)


class ReportScheduler:
    """Sends each configured period's report once it has ended (``grace_s`` later)."""

    def __init__(
        self, store: ReportStore, post: Callable[[bytes], Awaitable[object]], periods: Sequence[str],
        *, grace_s: float = 120.0, clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self._store = store
        self._post = post
        self._periods = list(periods)
        self._grace_s = grace_s
        self._clock = clock
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(p), name=f"sluice-report-{p}") for p in self._periods]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def send_due(self, name: str) -> bool:
        """Send the last ended period's report unless a replica already has. True if sent here."""
        now = self._clock()
        period = last_period(name, now - self._grace_s)
        if not await self._store.claim_report(period.key, now):
            return False
        try:
            report = await make_report(self._store, period)
            await self._post(msgspec.json.encode(report))
        except BaseException:
            await asyncio.shield(self._store.unclaim_report(period.key))
            raise
        log.info("spend report %s sent", period.key)
        return True

    async def _run(self, name: str) -> None:
        while True:
            try:
                await self.send_due(name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a failed send is retried at the next wake-up, never fatal
                log.warning("spend report %s not sent: %s", name, type(exc).__name__)
            wait = next_boundary(name, self._clock() - self._grace_s) + self._grace_s - self._clock()
            await asyncio.sleep(min(max(wait, 1.0), 3600.0))
