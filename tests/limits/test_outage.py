"""Redis stops during a run: budgets fail closed, rate limits go local, and recovery is automatic."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest

from sluice.config.limits import BudgetConfig, RateLimitConfig
from sluice.config.model import OutageConfig
from sluice.errors import RateLimited, ServiceUnavailable
from sluice.limits import Level, Limiter
from sluice.limits.redis_state import RedisState
from sluice.limits.resilient import ResilientState
from tests.conftest import IN_CI

pytestmark = pytest.mark.redis


class PrivateRedis:
    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.1).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        if IN_CI:
            pytest.fail("redis-server is not installed (CI=true: missing services fail)")
        pytest.skip("redis-server is not installed")
    server = PrivateRedis()
    server.start()
    yield server
    server.stop()


RATE_ONLY = Level("key", "k1", rate=RateLimitConfig(rpm=5))
WITH_BUDGET = Level("team", "t", budget=BudgetConfig(usd=Decimal(10)))


async def test_outage_and_recovery(private_redis: PrivateRedis):
    state = ResilientState(RedisState(private_redis.url, timeout_s=0.2), OutageConfig(), retry_s=0.3)
    lim = Limiter(state)
    shared = await lim.admit([RATE_ONLY, WITH_BUDGET], tokens=1, cost=Decimal("0.5"))
    assert shared.backend == "shared"

    private_redis.stop()
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable) as err:
        await lim.admit([WITH_BUDGET], tokens=1, cost=Decimal("0.5"))
    assert "budget" in err.value.message and err.value.status == 503
    lim.settle(shared, tokens=1, cost=Decimal("0.25"))  # kept, replayed after recovery
    # Rate limits continue on this replica's local limits (the full 5/min here).
    local = [await lim.admit([RATE_ONLY], tokens=1) for _ in range(5)]
    assert {t.backend for t in local} == {"local"}
    with pytest.raises(RateLimited):
        await lim.admit([RATE_ONLY], tokens=1)
    with pytest.raises(ServiceUnavailable):
        await lim.admit([RATE_ONLY, WITH_BUDGET], tokens=1, cost=Decimal("0.5"))
    assert time.monotonic() - started < 1.5  # nothing hangs: one short timeout, then fast failures
    for t in local:
        lim.settle(t, tokens=1)
    assert await state.local.in_flight([lim.rate_key(RATE_ONLY)], 0) == [0]

    private_redis.start()  # an empty Redis: no persistence
    await asyncio.sleep(0.35)
    back = await lim.admit([RATE_ONLY, WITH_BUDGET], tokens=1, cost=Decimal("1"))
    assert back.backend == "shared"
    lim.settle(back, tokens=1, cost=Decimal("1"))
    await lim.flush()
    [status] = await lim.budget_report([WITH_BUDGET])
    assert status.spent_usd == Decimal("1.25")  # the settle from before the outage was replayed
    assert status.reserved_usd == 0
    for _ in range(4):  # the shared limit holds again: 5/min counted in Redis
        await lim.admit([RATE_ONLY], tokens=1)
    with pytest.raises(RateLimited):
        await lim.admit([RATE_ONLY], tokens=1)
    await lim.close()


async def test_policy_fail_open_and_fail_closed(private_redis: PrivateRedis):
    private_redis.stop()
    open_state = ResilientState(
        RedisState(private_redis.url, timeout_s=0.2),
        OutageConfig(budgets="fail_open", rate_limits="fail_open"),
    )
    lim = Limiter(open_state)
    t = await lim.admit([RATE_ONLY, WITH_BUDGET], tokens=1, cost=Decimal(1))
    assert t.backend == "none"
    lim.settle(t, tokens=1, cost=Decimal(1))
    assert await lim.extend(t, Decimal(1))
    closed = ResilientState(
        RedisState(private_redis.url, timeout_s=0.2), OutageConfig(rate_limits="fail_closed")
    )
    with pytest.raises(ServiceUnavailable):
        await Limiter(closed).admit([RATE_ONLY], tokens=1)
    await lim.close()
    await closed.close()
