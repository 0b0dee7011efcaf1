"""Entries in Redis: one string per entry with its TTL, shared by every replica.

Each call has a short socket timeout. ``get`` and ``put`` turn any failure into a miss (or a write
skipped), logged once per outage; ``clear`` and ``stats`` raise ServiceUnavailable instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from sluice.cache.store import StoreStats
from sluice.errors import ServiceUnavailable

log = logging.getLogger("sluice.cache")
_SCAN_BATCH = 500


class RedisStore:
    name = "redis"

    def __init__(self, url: str, *, prefix: str, timeout_s: float, max_connections: int = 64) -> None:
        pool = BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=timeout_s * 3, socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0),
        )  # fmt: skip
        self._redis: aioredis.Redis = aioredis.Redis(connection_pool=pool)
        self._prefix = prefix
        self._timeout = timeout_s
        self._down = False

    def _failed(self, exc: BaseException) -> None:
        if not self._down:
            self._down = True
            log.warning(
                "cache: Redis unreachable (%s): every lookup is a miss until it answers", type(exc).__name__
            )

    def _ok(self) -> None:
        if self._down:
            self._down = False
            log.warning("cache: Redis answers again")

    async def get(self, key: str) -> bytes | None:
        try:
            async with asyncio.timeout(self._timeout * 2):
                data = await self._redis.get(self._prefix + key)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
            return None
        self._ok()
        if data is None:
            return None
        return data.encode() if isinstance(data, str) else bytes(data)

    async def put(self, key: str, data: bytes, ttl_s: float) -> None:
        ms = int(ttl_s * 1000)
        if ms <= 0:
            return
        try:
            async with asyncio.timeout(self._timeout * 2):
                await self._redis.set(self._prefix + key, data, px=ms)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
            return
        self._ok()

    async def delete(self, key: str) -> bool:
        try:
            async with asyncio.timeout(self._timeout * 2):
                gone = await self._redis.delete(self._prefix + key)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
            raise ServiceUnavailable("the cache's Redis is unreachable") from None
        self._ok()
        return bool(gone)

    def _pattern(self, route: str | None, team: str | None) -> str:
        return f"{self._prefix}{route or '*'}/{team or '*'}/*"

    async def _scan(self, route: str | None, team: str | None) -> AsyncIterator[list[bytes | str]]:
        cursor = 0
        while True:
            cursor, keys = await self._redis.scan(cursor, match=self._pattern(route, team), count=_SCAN_BATCH)
            if keys:
                yield list(keys)
            if cursor == 0:
                return

    async def clear(self, route: str | None, team: str | None) -> int:
        n = 0
        try:
            async for keys in self._scan(route, team):
                n += int(await self._redis.unlink(*keys))
        except (RedisError, OSError, TimeoutError) as exc:
            raise ServiceUnavailable(f"cache (Redis) unreachable: {type(exc).__name__}") from None
        return n

    async def stats(self, route: str | None, team: str | None) -> StoreStats:
        entries = size = 0
        try:
            async for keys in self._scan(route, team):
                pipe = self._redis.pipeline(transaction=False)
                for k in keys:
                    pipe.strlen(k)
                lengths = await pipe.execute()
                for k, length in zip(keys, lengths, strict=True):
                    if length:
                        entries += 1
                        size += int(length) + len(k) - len(self._prefix)
        except (RedisError, OSError, TimeoutError) as exc:
            raise ServiceUnavailable(f"cache (Redis) unreachable: {type(exc).__name__}") from None
        return StoreStats(entries, size)

    async def close(self) -> None:
        await self._redis.aclose()
