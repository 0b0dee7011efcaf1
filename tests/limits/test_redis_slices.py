"""Requests/min on Redis: the same 50 ms slices as the memory backend, decision for decision."""

from __future__ import annotations

import random

import pytest
import redis.asyncio as aioredis

from sluice.config.limits import RateLimitConfig
from sluice.errors import RateLimited
from sluice.limits import Level, Limiter, MemoryState
from sluice.limits.model import WINDOW_S
from sluice.limits.redis_state import RedisState
from sluice.limits.window import RPM_SLICE_S
from tests.conftest import require_service
from tests.limits.conftest import REDIS_URL, FakeClock, drop_keys

pytestmark = pytest.mark.redis


@pytest.fixture(autouse=True)
def _redis_up() -> None:
    require_service("redis", 6379)


def _team(rpm: int) -> Level:
    return Level("team", "billing", rate=RateLimitConfig(rpm=rpm))


async def _drive(lim: Limiter, clock: FakeClock, level: Level, gaps: list[float]) -> list[object]:
    """Admit once after each gap; what each admission gave: remaining count, or the refusal's wait."""
    seen: list[object] = []
    for gap in gaps:
        clock.advance(gap)
        try:
            ticket = await lim.admit([level], tokens=1)
        except RateLimited as exc:
            seen.append(("refused", exc.retry_after))
        else:
            seen.append(ticket.headers["x-ratelimit-remaining-requests"])
            lim.settle(ticket, tokens=1)
    return seen


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_redis_decides_exactly_like_memory(prefix: str, seed: int) -> None:
    """Bursts inside one slice, gaps across slices and across the window: same admissions, same
    remaining counts, same waits on both backends."""
    rnd = random.Random(seed)
    # No sum of these gaps lands within a microsecond of a slice's end (Redis keeps times to the
    # microsecond, so such a tie could be split differently).
    gaps = [rnd.choice([0.0, 0.0013, 0.0217, 0.0433, 0.0571, 0.3119, 5.0037, 17.0041]) for _ in range(400)]
    level = _team(rpm=40)
    results = []
    for state in (MemoryState(), RedisState(REDIS_URL, server_time=False, timeout_s=2.0)):
        clock = FakeClock()
        lim = Limiter(state, prefix=f"{prefix}{type(state).__name__}:", clock=clock)
        try:
            results.append(await _drive(lim, clock, level, gaps))
        finally:
            await state.close()
    await drop_keys(prefix)
    memory, shared = results
    assert len(shared) == len(memory)
    for i, (mine, theirs) in enumerate(zip(shared, memory, strict=True)):
        if isinstance(theirs, tuple):  # Redis reports waits in whole milliseconds, rounded up
            assert isinstance(mine, tuple) and mine[1] == pytest.approx(theirs[1], abs=0.0011), i
        else:
            assert mine == theirs, i
    assert any(isinstance(x, tuple) for x in memory), "the sequence must reach the limit"


async def test_one_entry_per_slice_not_per_request(prefix: str) -> None:
    clock = FakeClock()
    state = RedisState(REDIS_URL, server_time=False, timeout_s=2.0)
    lim = Limiter(state, prefix=prefix, clock=clock)
    level = _team(rpm=1_000_000)
    r = aioredis.from_url(REDIS_URL)
    try:
        for _ in range(2_000):  # 1,000 requests/s for 2 s
            lim.settle(await lim.admit([level], tokens=1), tokens=1)
            clock.advance(0.001)
        key = lim.rate_key(level)
        assert await r.zcard(f"{key}:r") <= 2 / RPM_SLICE_S + 1
        assert int(await r.hget(f"{key}:rs", "n")) == 2_000
        ticket = await lim.admit([level], tokens=1)
        assert ticket.headers["x-ratelimit-remaining-requests"] == str(1_000_000 - 2_001)
        clock.advance(WINDOW_S + 1)  # everything has left the window
        ticket = await lim.admit([level], tokens=1)
        assert ticket.headers["x-ratelimit-remaining-requests"] == str(1_000_000 - 1)
        assert await r.zcard(f"{key}:r") == 1
    finally:
        await state.close()
        await r.aclose()
        await drop_keys(prefix)


async def test_log_written_before_slices_still_counts(prefix: str) -> None:
    """A request log left by an older build (one member per request, no weights) keeps counting
    until it leaves the window: an upgrade never admits more than the limit."""
    clock = FakeClock()
    state = RedisState(REDIS_URL, server_time=False, timeout_s=2.0)
    lim = Limiter(state, prefix=prefix, clock=clock)
    level = _team(rpm=3)
    key = lim.rate_key(level)
    r = aioredis.from_url(REDIS_URL)
    try:
        await r.zadd(f"{key}:r", {"old-a": clock() - 30, "old-b": clock() - 10})
        lim.settle(await lim.admit([level], tokens=1), tokens=1)
        with pytest.raises(RateLimited) as err:
            await lim.admit([level], tokens=1)
        assert err.value.retry_after == pytest.approx(30, abs=0.01)  # old-a leaves at t+30
        clock.advance(30.5)
        lim.settle(await lim.admit([level], tokens=1), tokens=1)
        assert int(await r.hget(f"{key}:rs", "n")) == 3
    finally:
        await state.close()
        await r.aclose()
        await drop_keys(prefix)
