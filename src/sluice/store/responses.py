"""Stored Responses API answers: put / get / delete, scoped to the key's team, with retention.

A request never waits for the database to write: ``put`` keeps the row in memory (where ``get``
finds it at once) and a background task writes rows in batches. Rows older than the retention are
never returned and are purged by the same task, off the request path. Reads (``GET``,
``previous_response_id``) are one primary-key lookup, run off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from sluice.store.base import StoreUnavailable
from sluice.store.responses_sql import ResponseTable, StoredResponse, open_table

log = logging.getLogger("sluice.store")

__all__ = ["ResponseStore", "StoredResponse", "open_response_store"]


class ResponseStore:
    def __init__(
        self,
        table: ResponseTable,
        *,
        retention_s: float,
        flush_interval_s: float = 0.1,
        purge_interval_s: float = 3600.0,
        max_pending_bytes: int = 64 * 1024 * 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._table = table
        self.retention_s = retention_s
        self._flush_interval_s = flush_interval_s
        self._purge_interval_s = purge_interval_s
        self._max_pending_bytes = max_pending_bytes
        self._clock = clock
        self._pending: dict[str, StoredResponse] = {}
        self._pending_bytes = 0
        self._inflight: dict[str, StoredResponse] = {}
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.dropped = 0
        self.purged = 0

    async def start(self) -> None:
        await self._table.open()
        self._task = asyncio.create_task(self._run(), name="sluice-responses")

    async def close(self) -> None:
        self._closing = True  # the task also stops at its next turn, should a cancel be lost
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self._flush()
        except StoreUnavailable as exc:
            log.error("stored responses not written at shutdown (%d): %s", len(self._pending), exc)
        await self._table.close()

    def put(self, row: StoredResponse) -> None:
        """Keep ``row``; it is written within ``flush_interval_s``. Never waits."""
        size = len(row.body) + len(row.conversation)
        while self._pending and self._pending_bytes + size > self._max_pending_bytes:
            # The database has been unreachable for a long while: the oldest unwritten answer goes.
            old = self._pending.pop(next(iter(self._pending)))
            self._pending_bytes -= len(old.body) + len(old.conversation)
            self.dropped += 1
            log.error("stored response %s dropped: the response store is behind or down", old.id)
        self._pending[row.id] = row
        self._pending_bytes += size
        self._wake.set()

    async def get(self, response_id: str, team: str) -> StoredResponse | None:
        since = self._clock() - self.retention_s
        row = self._pending.get(response_id) or self._inflight.get(response_id)
        if row is None:
            row = await self._table.get(response_id, team, since)
        if row is None or row.team != team or row.created_at < since:
            return None
        return row

    async def delete(self, response_id: str, team: str) -> bool:
        async with self._lock:  # not while a batch holding it is being written
            row = self._pending.get(response_id)
            found = False
            if row is not None and row.team == team:
                del self._pending[response_id]
                self._pending_bytes -= len(row.body) + len(row.conversation)
                found = True
            return await self._table.delete(response_id, team) or found

    async def _run(self) -> None:
        """Sleeps until there is something to write (or to purge): an idle gateway does no work."""
        next_purge = time.monotonic()
        while not self._closing:
            # asyncio.timeout, not wait_for: a cancel arriving as a put wakes the task could leave
            # wait_for waiting on its inner task, and close waiting for this one, forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_purge - time.monotonic())):
                    await self._wake.wait()
            try:
                if self._wake.is_set():
                    await asyncio.sleep(self._flush_interval_s)  # let a batch gather
                    self._wake.clear()
                    await self._flush()
                if time.monotonic() >= next_purge:
                    next_purge = time.monotonic() + self._purge_interval_s
                    await self.purge()
            except StoreUnavailable as exc:
                log.warning("response store unavailable (%d answers waiting): %s", len(self._pending), exc)
                self._wake.set()  # try again
                await asyncio.sleep(1.0)

    async def _flush(self) -> None:
        async with self._lock:  # a batch being written is waited for, so a flush means written
            if not self._pending:
                return
            batch, self._pending, self._pending_bytes = self._pending, {}, 0
            self._inflight = batch
            try:
                await self._table.put_many(list(batch.values()))
            except BaseException:  # unavailable, or cancelled at shutdown: written next time
                batch.update(self._pending)  # oldest first
                self._pending = batch
                self._pending_bytes = sum(len(r.body) + len(r.conversation) for r in batch.values())
                raise
            finally:
                self._inflight = {}

    async def purge(self) -> int:
        count = await self._table.purge(self._clock() - self.retention_s)
        self.purged += count
        if count:
            log.info("purged %d stored responses older than %.0f days", count, self.retention_s / 86400)
        return count


def open_response_store(url: str, retention_days: float) -> ResponseStore:
    return ResponseStore(open_table(url), retention_s=retention_days * 86400.0)
