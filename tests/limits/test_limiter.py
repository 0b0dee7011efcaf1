"""Limiter behaviour, identical on the memory and Redis backends (see conftest.make_limiter)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from sluice.config.limits import BudgetConfig, LimitsConfig, RateLimitConfig
from sluice.errors import RateLimited
from sluice.limits import BudgetAlert, Level
from sluice.limits.window import RPM_SLICE_S

D = Decimal


def team(rpm: int | None = None, tpm: int | None = None, concurrent: int | None = None) -> Level:
    return Level("team", "billing", rate=RateLimitConfig(rpm=rpm, tpm=tpm, concurrent=concurrent))


def budget(usd: str, **kw: object) -> BudgetConfig:
    return BudgetConfig(usd=D(usd), **kw)  # type: ignore[arg-type]


async def test_no_levels_is_free(make_limiter):
    lim = make_limiter()
    ticket = await lim.admit([], tokens=100)
    assert ticket.admission is None and ticket.headers == {}
    lim.settle(ticket, tokens=5)


async def test_rpm_exact_and_sliding(make_limiter, clock):
    lim = make_limiter()
    lv = team(rpm=3)
    for _ in range(3):
        await lim.admit([lv], tokens=1)
        clock.advance(10)
    with pytest.raises(RateLimited) as err:
        await lim.admit([lv], tokens=1)
    e = err.value
    assert "team billing: 3 requests/min" in e.message
    # The oldest admission (t=0, in a slice dated at its end, t=0.05) leaves the window at
    # t=60.05; now is t=30.
    assert e.retry_after == pytest.approx(30 + RPM_SLICE_S, abs=0.01)
    assert e.headers["x-ratelimit-remaining-requests"] == "0"
    clock.advance(29.9)
    with pytest.raises(RateLimited):  # never early
        await lim.admit([lv], tokens=1)
    clock.advance(0.15)  # t=60.05: the first one has left the window, the others have not
    await lim.admit([lv], tokens=1)
    with pytest.raises(RateLimited):
        await lim.admit([lv], tokens=1)


async def test_headers_name_the_tightest_level(make_limiter):
    lim = make_limiter()
    levels = [team(rpm=100, tpm=1000), Level("key", "k1", rate=RateLimitConfig(rpm=10, tpm=50_000))]
    ticket = await lim.admit(levels, tokens=200)
    assert ticket.headers["x-ratelimit-limit-requests"] == "10"
    assert ticket.headers["x-ratelimit-remaining-requests"] == "9"
    assert ticket.headers["x-ratelimit-limit-tokens"] == "1000"
    assert ticket.headers["x-ratelimit-remaining-tokens"] == "800"
    assert ticket.headers["x-ratelimit-reset-tokens"] == "1m0s"


async def test_tpm_reserves_then_settles_to_real_usage(make_limiter, clock):
    lim = make_limiter()
    lv = team(tpm=1000)
    t1 = await lim.admit([lv], tokens=600)
    with pytest.raises(RateLimited) as err:
        await lim.admit([lv], tokens=600)
    assert "team billing: 1000 tokens/min" in err.value.message
    lim.settle(t1, tokens=100)  # the answer was short: 500 tokens go back
    await lim.flush()
    t2 = await lim.admit([lv], tokens=600)
    assert t2.headers["x-ratelimit-remaining-tokens"] == "300"


async def test_request_bigger_than_tpm_is_a_hard_refusal(make_limiter):
    lim = make_limiter()
    with pytest.raises(RateLimited) as err:
        await lim.admit([team(tpm=1000)], tokens=1001)
    assert err.value.should_retry is False
    from sluice.server.render import error_headers

    headers = error_headers(err.value)  # not "retry after 1 s" next to "do not retry"
    assert headers["x-should-retry"] == "false" and "retry-after" not in headers


async def test_concurrency_released_on_settle(make_limiter):
    lim = make_limiter()
    lv = team(concurrent=2)
    a = await lim.admit([lv], tokens=1)
    await lim.admit([lv], tokens=1)
    with pytest.raises(RateLimited) as err:
        await lim.admit([lv], tokens=1)
    assert "2 concurrent requests" in err.value.message
    lim.release(a)
    lim.release(a)  # twice is a no-op
    await lim.flush()
    await lim.admit([lv], tokens=1)
    assert await lim.in_flight([lv]) == [2]


async def test_concurrency_lease_expires(make_limiter, clock):
    lim = make_limiter(LimitsConfig(lease_s=30))
    lv = team(concurrent=1)
    await lim.admit([lv], tokens=1)  # never settled: its holder crashed
    clock.advance(31)
    await lim.admit([lv], tokens=1)


async def test_all_or_nothing_across_levels(make_limiter):
    lim = make_limiter()
    key = Level("key", "k1", rate=RateLimitConfig(rpm=1000, concurrent=10))
    tight = Level("user", "billing/alice", rate=RateLimitConfig(rpm=1))
    await lim.admit([key, tight], tokens=1)
    for _ in range(5):
        with pytest.raises(RateLimited) as err:
            await lim.admit([key, tight], tokens=1)
        assert "user billing/alice: 1 requests/min" in err.value.message
    # The refused requests took nothing from the key level.
    ticket = await lim.admit([key], tokens=1)
    assert ticket.headers["x-ratelimit-remaining-requests"] == str(1000 - 2)
    assert await lim.in_flight([key]) == [2]


async def test_budget_reserve_settle_and_hard_stop(make_limiter, clock):
    lim = make_limiter()
    lv = Level("team", "billing", budget=budget("1.00"))
    a = await lim.admit([lv], tokens=10, cost=D("0.60"))
    with pytest.raises(RateLimited) as err:  # reserved, not spent: waiting may help
        await lim.admit([lv], tokens=10, cost=D("0.50"))
    assert err.value.should_retry is None and err.value.retry_after == 1.0
    lim.settle(a, tokens=10, cost=D("0.30"))
    await lim.flush()
    b = await lim.admit([lv], tokens=10, cost=D("0.70"))
    lim.settle(b, tokens=10, cost=D("0.70"))
    await lim.flush()
    [status] = await lim.budget_report([lv])
    assert (status.spent_usd, status.reserved_usd) == (D("1.00"), D(0))
    with pytest.raises(RateLimited) as err:  # spent: a hard stop, even for a free request
        await lim.admit([lv], tokens=10, cost=D(0))
    e = err.value
    assert e.should_retry is False and e.code == "budget_exceeded"
    assert "team billing budget: $1.00 monthly" in e.message
    assert e.message.startswith("Budget exhausted") and "$1.000000 spent" in e.message
    assert e.retry_after is None and "resets at 2026-02-01" in e.message  # waiting a second will not do
    clock.advance(31 * 86400)  # next period
    await lim.admit([lv], tokens=10, cost=D("0.90"))


async def test_budget_report_and_reset_time(make_limiter, clock):
    lim = make_limiter(LimitsConfig(timezone="Europe/Paris"))
    lv = Level("key", "k_9", budget=budget("5", period="daily"), display="ci-bot")
    t = await lim.admit([lv], tokens=1, cost=D("0.25"))
    [st] = await lim.budget_report([lv])
    assert st.scope == "key ci-bot" and st.reserved_usd == D("0.25") and st.spent_usd == 0
    assert st.resets_at.isoformat() == "2026-01-02T00:00:00+01:00"
    assert st.to_dict()["remaining_usd"] == "4.75"
    lim.settle(t, tokens=1, cost=D("0.1"))
    await lim.flush()
    [st] = await lim.budget_report([lv])
    assert (st.spent_usd, st.reserved_usd) == (D("0.1"), 0)


async def test_budget_reservation_lease_expires(make_limiter, clock):
    lim = make_limiter(LimitsConfig(lease_s=60))
    lv = Level("team", "t", budget=budget("1"))
    await lim.admit([lv], tokens=1, cost=D("1"))
    clock.advance(61)
    await lim.admit([lv], tokens=1, cost=D("1"))


async def test_extend_only_with_room(make_limiter):
    lim = make_limiter()
    lv = Level("team", "t", budget=budget("1"))
    t = await lim.admit([lv], tokens=1, cost=D("0.5"))
    assert await lim.extend(t, D("0.4"))
    assert not await lim.extend(t, D("0.2"))
    assert t.cost_reserved_nano == 900_000_000
    [st] = await lim.budget_report([lv])
    assert st.reserved_usd == D("0.9")
    lim.settle(t, tokens=1, cost=D("0.95"))
    await lim.flush()
    [st] = await lim.budget_report([lv])
    assert (st.spent_usd, st.reserved_usd) == (D("0.95"), 0)


async def test_user_budgets_are_discovered(make_limiter):
    lim = make_limiter()
    b = budget("2", period="weekly")
    for name in ("search/bob", "billing/alice"):
        t = await lim.admit([Level("user", name, budget=b)], tokens=1, cost=D("0.5"))
        lim.settle(t, tokens=1, cost=D("0.5"))
    await lim.flush()
    levels = await lim.user_levels(b)
    assert [lv.name for lv in levels] == ["billing/alice", "search/bob"]
    assert [s.spent_usd for s in await lim.budget_report(levels)] == [D("0.5"), D("0.5")]


class Sink:
    def __init__(self) -> None:
        self.alerts: list[BudgetAlert] = []

    def notify(self, alert: BudgetAlert) -> None:
        self.alerts.append(alert)


async def test_alerts_fire_once_per_threshold_per_period(make_limiter, clock):
    sink = Sink()
    lim = make_limiter(alerts=sink)
    lv = Level("team", "search", budget=budget("1", alert_at=[0.8, 1.0]))
    for _ in range(12):
        try:
            t = await lim.admit([lv], tokens=1, cost=D("0.1"))
        except RateLimited:
            break
        lim.settle(t, tokens=1, cost=D("0.1"))
        await lim.flush()
    assert [a.threshold for a in sink.alerts] == [0.8, 1.0]
    assert sink.alerts[0].scope == "team search" and sink.alerts[0].spent_usd == D("0.8")
    clock.advance(32 * 86400)
    t = await lim.admit([lv], tokens=1, cost=D("0.85"))
    lim.settle(t, tokens=1, cost=D("0.85"))
    await lim.flush()
    assert [a.threshold for a in sink.alerts] == [0.8, 1.0, 0.8]


async def test_thousand_concurrent_admissions_never_overspend(make_limiter):
    """$1.00 budget, 1,000 concurrent requests each worth at most $0.01."""
    lims = [make_limiter() for _ in range(4)]  # for Redis: four clients, like four replicas
    lv = Level("team", "t", budget=budget("1.00"), rate=RateLimitConfig(concurrent=1000))
    admitted = 0
    refused = 0

    async def one(i: int) -> None:
        nonlocal admitted, refused
        lim = lims[i % len(lims)]
        try:
            t = await lim.admit([lv], tokens=10, cost=D("0.01"))
        except RateLimited:
            refused += 1
            return
        admitted += 1
        await asyncio.sleep(0)
        lim.settle(t, tokens=10, cost=D("0.004") if i % 2 else D("0.01"))

    await asyncio.gather(*(one(i) for i in range(1000)))
    for lim in lims:
        await lim.flush()
    [st] = await lims[0].budget_report([lv])
    assert st.spent_usd <= D("1.00")
    assert st.reserved_usd == 0
    assert admitted + refused == 1000 and admitted >= 100
    assert await lims[0].in_flight([lv]) == [0]


async def test_a_worst_case_that_does_not_fit_is_not_called_exhausted(make_limiter):
    """0.7% spent and a request whose worst case is more than is left: say that, with the numbers."""
    from sluice.server.render import error_headers

    lim = make_limiter()
    lv = Level("team", "billing", budget=budget("10.00"))
    a = await lim.admit([lv], tokens=10, cost=D("0.07"))
    lim.settle(a, tokens=10, cost=D("0.07"))
    await lim.flush()
    with pytest.raises(RateLimited) as err:
        await lim.admit([lv], tokens=10, cost=D("12.50"))
    e = err.value
    assert "exhausted" not in e.message.lower()
    assert "$0.070000 spent (0.7%)" in e.message
    assert "$9.930000 left" in e.message and "worst-case cost is $12.500000" in e.message
    assert "lower max_tokens" in e.message
    headers = error_headers(e)
    assert headers["x-should-retry"] == "false" and "retry-after" not in headers
