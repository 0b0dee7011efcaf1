"""Semantic vectors shared through Redis: every replica's index learns every replica's entries.

Each entry the semantic cache learns is appended to one Redis stream (``<prefix>semantic``, capped
at the index's size); every replica reads the stream from its start when it opens, then follows it
(a blocking read of at most ``_BLOCK_MS``), so an entry written on one replica is found by the
others well within a second. The entries themselves are in Redis already; the stream carries only
(bucket, key, expiry, vector). A Redis outage stops the feed (logged once) and it resumes after.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

if TYPE_CHECKING:
    from sluice.cache.embedders import Vector
    from sluice.cache.vectors import VectorIndex

log = logging.getLogger("sluice.cache")
_BLOCK_MS = 200
_BATCH = 1000


class RedisVectorFeed:
    def __init__(self, url: str, *, prefix: str, timeout_s: float, max_len: int) -> None:
        # Its own connection: the blocking read must not hold one of the store's.
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s + _BLOCK_MS / 1000, socket_connect_timeout=timeout_s
        )
        self._publisher: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._stream = prefix + "semantic"
        self._max_len = max_len
        self._task: asyncio.Task[None] | None = None
        self._down = False

    async def publish(self, bucket: str, key: str, vector: Vector, expires_at: float) -> None:
        fields = {"b": bucket, "k": key, "e": repr(expires_at), "v": vector.tobytes()}
        try:
            await self._publisher.xadd(self._stream, fields, maxlen=self._max_len, approximate=True)  # type: ignore[arg-type]
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)

    def start(self, index: VectorIndex) -> None:
        self._task = asyncio.get_running_loop().create_task(self._follow(index))

    async def _follow(self, index: VectorIndex) -> None:
        import numpy as np

        last = "0-0"
        while True:
            try:
                reply: Any = await self._redis.xread({self._stream: last}, count=_BATCH, block=_BLOCK_MS)
            except (RedisError, OSError, TimeoutError) as exc:
                self._failed(exc)
                await asyncio.sleep(1.0)
                continue
            if self._down:
                self._down = False
                log.warning("cache: the semantic feed (Redis) answers again")
            for _stream, items in reply or ():
                for entry_id, f in items:
                    last = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                    vec = np.frombuffer(f[b"v"], dtype=np.float32)
                    if vec.shape[0]:
                        index.add(f[b"b"].decode(), vec.copy(), f[b"k"].decode(), float(f[b"e"]))

    def _failed(self, exc: BaseException) -> None:
        if not self._down:
            self._down = True
            log.warning("cache: the semantic feed (Redis) is unreachable (%s)", type(exc).__name__)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._redis.aclose()
        await self._publisher.aclose()
