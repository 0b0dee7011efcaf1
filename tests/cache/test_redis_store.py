"""The Redis store against the real Redis: TTLs, clear and stats by prefix, and an outage is a miss."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest

from sluice.cache.redis_store import RedisStore
from sluice.errors import ServiceUnavailable

pytestmark = pytest.mark.redis


@pytest.fixture
async def store(redis_url: str) -> RedisStore:
    s = RedisStore(redis_url, prefix=f"test-cache-{uuid.uuid4().hex}:", timeout_s=0.5)
    yield s  # type: ignore[misc]
    await s.clear(None, None)
    await s.close()


async def test_put_get_and_ttl(store: RedisStore) -> None:
    await store.put("r/t/a", b"\x00entry", 0.2)
    assert await store.get("r/t/a") == b"\x00entry"
    await asyncio.sleep(0.35)
    assert await store.get("r/t/a") is None
    await store.put("r/t/b", b"x", 0)
    assert await store.get("r/t/b") is None


async def test_clear_and_stats_by_route_and_team(store: RedisStore) -> None:
    for route in ("r1", "r2"):
        for team in ("t1", "t2"):
            await store.put(f"{route}/{team}/d", b"12345", 60)
    assert (await store.stats(None, None)).entries == 4
    s = await store.stats("r1", None)
    assert s.entries == 2 and s.bytes == 2 * (5 + len("r1/t1/d"))
    assert await store.clear(None, "t1") == 2
    assert await store.clear("r2", None) == 1
    assert (await store.stats(None, None)).entries == 1


async def test_unreachable_redis_is_a_miss_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    down = RedisStore("redis://127.0.0.1:1/0", prefix="test-cache-down:", timeout_s=0.1)
    with caplog.at_level(logging.WARNING, logger="sluice.cache"):
        for _ in range(3):
            assert await down.get("r/t/x") is None
            await down.put("r/t/x", b"1", 10)
    assert sum("unreachable" in r.message for r in caplog.records) == 1
    with pytest.raises(ServiceUnavailable):
        await down.clear(None, None)
    await down.close()
