"""Where entries live: the protocol, and the in-process store (LRU, bounded by bytes).

Keys are ``route/team/digest`` (see :mod:`sluice.cache.keys`), which lets a store clear or count
by route and team without knowing anything else about an entry.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sluice.config.cache import CacheConfig


@dataclass(frozen=True, slots=True)
class StoreStats:
    entries: int
    bytes: int


class CacheStore(Protocol):
    """Every method answers within the store's timeout. ``get`` and ``put`` never raise for an
    unreachable backend (a miss; a write skipped); ``clear`` and ``stats`` raise
    :class:`~sluice.errors.ServiceUnavailable` so an operator sees why they did nothing."""

    name: str

    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, data: bytes, ttl_s: float) -> None: ...

    async def clear(self, route: str | None, team: str | None) -> int: ...

    async def delete(self, key: str) -> bool:
        """Drop one entry (an answer rated negatively); True if it was there."""
        ...

    async def stats(self, route: str | None, team: str | None) -> StoreStats: ...

    async def close(self) -> None: ...


def matches(key: str, route: str | None, team: str | None) -> bool:
    """Is ``key`` an entry (``route/team/digest``) of this route and team? (Two-part keys are the
    cache's own bookkeeping, never entries.)"""
    if key.count("/") < 2:
        return False
    k_route, _, rest = key.partition("/")
    k_team = rest.partition("/")[0]
    return (route is None or k_route == route) and (team is None or k_team == team)


class MemoryStore:
    """Least recently used entries are dropped first once ``max_bytes`` is reached; expired ones
    as they are met. The size counted is the encoded entry plus its key."""

    name = "memory"

    def __init__(self, max_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self._clock = clock
        self._items: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    async def get(self, key: str) -> bytes | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[1] <= self._clock():
            self._drop(key)
            return None
        self._items.move_to_end(key)
        return item[0]

    async def put(self, key: str, data: bytes, ttl_s: float) -> None:
        self.put_now(key, data, ttl_s)

    def put_now(self, key: str, data: bytes, ttl_s: float) -> None:
        """``put`` without a coroutine: the middleware writes in place, no task needed."""
        size = len(data) + len(key)
        if size > self.max_bytes or ttl_s <= 0:
            return
        if key in self._items:
            self._drop(key)
        while self.bytes + size > self.max_bytes and self._items:
            self._drop(next(iter(self._items)))
        self._items[key] = (data, self._clock() + ttl_s)
        self.bytes += size

    def _drop(self, key: str) -> None:
        data, _ = self._items.pop(key)
        self.bytes -= len(data) + len(key)

    async def delete(self, key: str) -> bool:
        if key not in self._items:
            return False
        self._drop(key)
        return True

    async def clear(self, route: str | None, team: str | None) -> int:
        doomed = [k for k in self._items if matches(k, route, team)]
        for k in doomed:
            self._drop(k)
        return len(doomed)

    async def stats(self, route: str | None, team: str | None) -> StoreStats:
        now = self._clock()
        entries = size = 0
        for k, (data, expires) in self._items.items():
            if expires > now and matches(k, route, team):
                entries += 1
                size += len(data) + len(k)
        return StoreStats(entries, size)

    async def close(self) -> None:
        self._items.clear()
        self.bytes = 0


def open_store(config: CacheConfig, state_url: str) -> CacheStore:
    """The store ``cache.backend`` names (``check_cache`` has made sure a Redis URL exists)."""
    if config.backend == "memory":
        return MemoryStore(config.max_bytes)
    from sluice.cache.redis_store import RedisStore

    url = config.url or state_url
    return RedisStore(url, prefix=config.key_prefix, timeout_s=config.socket_timeout_s)
