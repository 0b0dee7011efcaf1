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
            await shared.failure(h, adm, "server")
        assert time.perf_counter() - started < 1.5, "an outage costs at most the socket timeout"
        assert not shared.up and h.breaker.state == "open", "the local breaker still opens"
        assert await shared.claim_probe(h), "without Redis, the replica probes for itself"
    finally:
        await shared.close()
    assert board.listener is None


async def test_in_memory_state_shares_nothing() -> None:
    board = HealthBoard(BreakerConfig(), 0.3, Clock())
    assert await share_health("memory://", board, BreakerConfig()) is None and board.listener is None
