"""Backends under test: every behaviour test runs on memory and on a real Redis (loopback)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from sluice.config.limits import LimitsConfig
from sluice.limits import Limiter, MemoryState
from sluice.limits.redis_state import RedisState
from sluice.limits.state import LimitState
from tests.conftest import require_service

REDIS_URL = "redis://127.0.0.1:6379/0"


class FakeClock:
    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def prefix() -> str:
    return f"test:{uuid.uuid4().hex[:12]}:"


async def drop_keys(prefix: str) -> None:
    r = aioredis.from_url(REDIS_URL)
    try:
        keys = [k async for k in r.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await r.delete(*keys)
    finally:
        await r.aclose()


MakeLimiter = Callable[..., Limiter]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def make_limiter(
    request: pytest.FixtureRequest, clock: FakeClock, prefix: str
) -> AsyncIterator[MakeLimiter]:
    """A factory for limiters sharing one state (like replicas sharing one Redis)."""
    states: list[LimitState] = []
    if request.param == "redis":
        require_service("redis", 6379)

    def make(config: LimitsConfig | None = None, **kwargs: object) -> Limiter:
        state: LimitState
        if request.param == "memory":
            state = states[0] if states else MemoryState()
        else:
            state = RedisState(REDIS_URL, server_time=False, timeout_s=2.0)
        states.append(state)
        return Limiter(state, config, prefix=prefix, clock=clock, **kwargs)  # type: ignore[arg-type]

    make.kind = request.param  # type: ignore[attr-defined]
    yield make
    for state in states:
        await state.close()
    if request.param == "redis":
        await drop_keys(prefix)
