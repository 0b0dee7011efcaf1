"""Shared health when Redis is down: each replica falls back to its own view, without waiting long."""

from __future__ import annotations

import time

from sluice.config.routing import BreakerConfig
from sluice.providers.base import Target
from sluice.routing.health import HealthBoard
from sluice.routing.shared_health import SharedHealth, share_health
from tests.routing.conftest import Clock


async def test_redis_down_falls_back_to_the_local_view() -> None:
    cfg = BreakerConfig(failures=2, error_ratio=None)
    board = HealthBoard(cfg, 0.3, Clock())
    shared = SharedHealth("redis://127.0.0.1:1/0", board, cfg, timeout_s=0.1)
    await shared.start()
    try:
        h = board.get(Target("p", "m"))
        started = time.perf_counter()
        for _ in range(2):
            adm = h.breaker.admit()
            h.breaker.failure(adm, "server")
            report = shared.failure(h, adm, "server")
            if report is not None:
                await report  # the first waits out the timeout; then nobody waits while Redis is down
        assert time.perf_counter() - started < 1.5, "an outage costs at most the socket timeout"
        assert not shared.up and h.breaker.state == "open", "the local breaker still opens"
        assert shared.failure(h, "pass", "server") is None
        assert await shared.claim_probe(h), "without Redis, the replica probes for itself"
    finally:
        await shared.close()
    assert board.listener is None


async def test_in_memory_state_shares_nothing() -> None:
    board = HealthBoard(BreakerConfig(), 0.3, Clock())
    assert await share_health("memory://", board, BreakerConfig()) is None and board.listener is None


async def test_an_open_breaker_reaches_the_other_replica_by_pubsub() -> None:
    import asyncio
    import uuid

    from tests.conftest import require_service

    require_service("redis", 6379)
    cfg = BreakerConfig(failures=2, error_ratio=None, cooldown_s=5)
    boards = [HealthBoard(cfg, 0.3, time.monotonic) for _ in range(2)]
    prefix = f"test:{uuid.uuid4().hex[:12]}:h:"
    shared = [SharedHealth("redis://127.0.0.1:6379/0", b, cfg, prefix=prefix, sync_s=3600) for b in boards]
    for s in shared:
        await s.start()
    try:
        await asyncio.sleep(0.2)  # subscribed
        a, b = (board.get(Target("p", "m")) for board in boards)
        for s, h in ((shared[0], a), (shared[1], b)):  # the second failure is seen by the other replica
            report = s.failure(h, "pass", "server")
            assert report is not None
            await report
        for _ in range(50):
            if a.breaker.state == "open":
                break
            await asyncio.sleep(0.01)
        assert a.breaker.state == b.breaker.state == "open", "no sync ran: the message did it"
        assert 4 < a.breaker.retry_in() <= 5
    finally:
        for s in shared:
            await s.close()
        import redis.asyncio as aioredis

        r = aioredis.Redis.from_url("redis://127.0.0.1:6379/0")
        await r.delete(f"{prefix}p:m", f"{prefix}p:m:probe")
        await r.aclose()
