"""Request-log upkeep in the background: day partitions made ahead (PostgreSQL) and, with
``store.retention_days``, old records removed — whole day partitions dropped on PostgreSQL,
small batches deleted on SQLite. Never on a request's path; the clock is injected for tests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from sluice.store.base import Store, StoreUnavailable

log = logging.getLogger("sluice.store")

#: How often the upkeep runs (the first run is at start).
INTERVAL_S = 3600.0


class Upkeep:
    def __init__(
        self,
        store: Store,
        retention_days: int | None,
        *,
        clock: Callable[[], float] = time.time,
        interval_s: float = INTERVAL_S,
    ) -> None:
        self._store = store
        self._days = retention_days
        self._clock = clock
        self._interval = interval_s
        self._task: asyncio.Task[None] | None = None
        self.purged = 0

    async def run_once(self) -> int:
        """Prepare partitions, then purge; returns what was removed (rows, or partitions on PostgreSQL)."""
        now = self._clock()
        await self._store.prepare_partitions(now)
        if self._days is None:
            return 0
        removed = await self._store.purge_before(now - self._days * 86400)
        self.purged += removed
        if removed:
            log.info("retention: removed %d (older than %d days)", removed, self._days)
        return removed

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="sluice-store-upkeep")

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except StoreUnavailable as exc:
                log.warning("store upkeep skipped (store unavailable): %s", exc)
            await asyncio.sleep(self._interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
