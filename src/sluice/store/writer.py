"""Batched, off-the-hot-path writing of request records.

``submit`` is a non-blocking append. A background task flushes batches every ``flush_interval_s``
(or as soon as a batch is full). When the database fails, records stay buffered and the flush is
retried with backoff. Beyond ``queue_size`` buffered records (a long outage, or a log that cannot
keep up), the oldest are appended to a spool file (JSON lines) by a thread, so the event loop never
waits on the disk; once the buffer is written again the spool is replayed into the database in
the background. At shutdown, what the database won't take is spooled too, and replayed at the
next start. So no record is lost to an outage or a graceful shutdown.

With a :class:`~sluice.store.journal.Journal`, ``submit`` also appends the record to it first,
so no record is lost to a crash either (``kill -9``): see that module for the guarantee. Each
buffered row remembers its journal segment (a parallel deque), so a segment is deleted once no
row from it is buffered or in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import deque
from pathlib import Path

from sluice.store import spool
from sluice.store.base import Store, StoreUnavailable
from sluice.store.journal import Journal, sync_and_close
from sluice.store.records import RequestRecord
from sluice.store.rows import RequestRow, request_to_row
from sluice.telemetry.metrics import METRICS

log = logging.getLogger("sluice.store")

#: After a spool write failed (disk full, permissions), overflow waits this long before trying again.
SPILL_RETRY_S = 1.0


class RecordWriter:
    def __init__(
        self,
        store: Store,
        spool_path: Path,
        *,
        flush_interval_s: float = 0.25,
        batch_size: int = 500,
        queue_size: int = 200_000,
        journal: Journal | None = None,
    ) -> None:
        self._store = store
        self._journal = journal
        #: The journal segment of each row in ``_buf`` (same order), and of the rows in flight.
        self._segs: deque[int] = deque()
        self._flushing_seg: int | None = None
        self._spill_seg: int | None = None
        self._spool = spool_path
        self._interval = flush_interval_s
        self._batch = batch_size
        self._limit = queue_size
        #: Rows, converted at submit time: converting a whole batch at flush time was a
        #: multi-millisecond burst on the event loop (the gateway's p99 tail at low load).
        self._buf: deque[RequestRow] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        #: The spill in flight (a thread appending to the spool) and how many rows it carries.
        self._spill: asyncio.Future[None] | None = None
        self._spilling = 0
        self._spill_failed_at = float("-inf")
        self._spooled_rows = False  # the spool may hold rows to replay
        self._on_disk = 0  # rows this process spooled that are not replayed yet
        self._store_down = False
        self.written = 0
        self.spooled = 0
        self.replayed = 0

    def submit(self, record: RequestRecord) -> None:
        row = request_to_row(record)
        journal = self._journal
        if journal is not None:
            journal.append(row)  # before the record leaves this call (and its answer is sent)
            self._segs.append(journal.segment)
        self._buf.append(row)
        n = len(self._buf)
        if n >= self._batch:
            self._wake.set()
        if n > self._limit and self._spill is None:
            self._start_spill(n)

    @property
    def pending(self) -> int:
        """Records this process has not written to the database yet: buffered, being spooled, or
        spooled and not replayed yet (a spool left by an earlier run is not counted)."""
        return len(self._buf) + self._spilling + self._on_disk

    def _take(self, n: int) -> tuple[list[RequestRow], list[int]]:
        rows = [self._buf.popleft() for _ in range(n)]
        segs = [self._segs.popleft() for _ in range(n)] if self._journal is not None else []
        return rows, segs

    def _give_back(self, rows: list[RequestRow], segs: list[int]) -> None:
        self._buf.extendleft(reversed(rows))
        self._segs.extendleft(reversed(segs))

    def _start_spill(self, n: int) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() - self._spill_failed_at < SPILL_RETRY_S:
            return
        # Everything over the limit, at least a batch: one thread hand-off per batch, not per record.
        rows, segs = self._take(min(n, max(n - self._limit, self._batch)))
        self._spilling = len(rows)
        self._spill_seg = segs[0] if segs else None
        self._spill = loop.run_in_executor(None, spool.append, self._spool, rows)
        self._spill.add_done_callback(functools.partial(self._spilled, rows, segs))

    def _spilled(self, rows: list[RequestRow], segs: list[int], fut: asyncio.Future[None]) -> None:
        self._spill, self._spilling, self._spill_seg = None, 0, None
        exc = None if fut.cancelled() else fut.exception()
        if exc is None and not fut.cancelled():
            self.spooled += len(rows)
            self._on_disk += len(rows)
            self._spooled_rows = True
            return
        # Not on disk: back to the front of the buffer, in order; retried after a pause.
        self._give_back(rows, segs)
        METRICS.store_error("spool")
        self._spill_failed_at = asyncio.get_running_loop().time()
        log.error("request log: cannot write the spool (%s); %d records held in memory", exc, len(self._buf))

    async def start(self) -> None:
        if self._journal is not None:
            adopt = functools.partial(spool.adopt, self._spool)
            n = await asyncio.get_running_loop().run_in_executor(None, self._journal.open, adopt)
            if n:
                log.warning("request log: %d journal segment(s) left by a crash, replaying them", n)
        self._spooled_rows = self._spool.exists() or spool.replay_path(self._spool).exists()
        self._task = asyncio.create_task(self._run(), name="sluice-record-writer")

    async def flush(self) -> None:
        """Write everything buffered now (raises StoreUnavailable if the database is down)."""
        while self._buf:
            batch, segs = self._take(min(self._batch, len(self._buf)))
            self._flushing_seg = segs[0] if segs else None
            try:
                await self._store.insert_requests(batch)
            except BaseException:
                self._give_back(batch, segs)
                raise
            finally:
                self._flushing_seg = None
            self.written += len(batch)

    def _oldest_live_segment(self) -> int:
        """The oldest journal segment a row not yet stored (buffered or in flight) came from."""
        assert self._journal is not None
        live = [s for s in (self._flushing_seg, self._spill_seg) if s is not None]
        if self._segs:
            live.append(self._segs[0])
        return min(live, default=self._journal.segment)

    async def _journal_cycle(self) -> None:
        """Close the current segment (synced by a thread), then delete segments now stored."""
        journal = self._journal
        if journal is None or journal.failed:
            return
        loop = asyncio.get_running_loop()
        fd = journal.rotate()
        if fd is not None:
            await loop.run_in_executor(None, sync_and_close, fd)
        await loop.run_in_executor(None, journal.trim, self._oldest_live_segment())

    async def _run(self) -> None:
        backoff = 0.0 if self._spooled_rows else self._interval  # a spool left by the last run: now
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
            self._wake.clear()
            try:
                await self.flush()
                if self._spooled_rows and self._spill is None and not self._closing:
                    await self._replay()
                backoff = self._interval
                if self._store_down:
                    self._store_down = False
                    log.warning("request log: the store is reachable again; %d records written", self.written)
            except StoreUnavailable as exc:
                backoff = min(max(backoff * 2, 0.5), 10.0)
                METRICS.store_error("write")
                if not self._store_down:  # once per outage, not once per retry
                    self._store_down = True
                    log.warning(
                        "request log: store unavailable, %d records buffered (%s)", len(self._buf), exc
                    )
            except Exception:  # a rejected batch, the spool file (permissions, a broken disk): never stop
                log.exception("request log: write or replay failed; the records are kept (buffer or spool)")
                self._spooled_rows = False
                backoff = min(max(backoff * 2, 0.5), 10.0)
            try:  # also during an outage: segments whose rows were spooled can go
                await self._journal_cycle()
            except OSError as exc:
                log.error("request journal: cannot rotate or trim (%s)", exc)

    async def _replay(self) -> None:
        """Insert the spool's rows (caught up: the buffer was just written), a batch at a time,
        off the loop for the file; the buffer's new rows are written in between."""
        loop = asyncio.get_running_loop()
        path = await loop.run_in_executor(None, spool.claim, self._spool)
        if path is None:
            self._spooled_rows = False
            return
        batches = spool.read_batches(path, self._batch)
        count = 0
        try:
            while not self._closing:
                batch = await loop.run_in_executor(None, next, batches, None)
                if batch is None:
                    break
                # Inserts ignore ids already present, so a replay cut short is safe to repeat.
                await self._store.insert_requests(batch)
                count += len(batch)
                self._on_disk = max(0, self._on_disk - len(batch))
                if len(self._buf) >= self._batch:
                    await self.flush()
            else:
                return  # shutting down: the rest stays in the file for the next start
        finally:
            self.replayed += count
            await loop.run_in_executor(None, batches.close)
        await loop.run_in_executor(None, path.unlink)
        self._spooled_rows = await loop.run_in_executor(None, self._spool.exists)
        if not self._spooled_rows and self._spill is None:
            self._on_disk = 0
        log.info("request log: replayed %d spooled records", count)

    async def close(self, timeout_s: float = 10.0) -> None:
        """Stop the task and write what is left; spool to disk whatever the database won't take."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        if self._spill is not None:
            await asyncio.gather(self._spill, return_exceptions=True)
            await asyncio.sleep(0)  # let its done-callback run
        try:
            await asyncio.wait_for(self.flush(), timeout=timeout_s)
        except Exception as exc:  # unavailable, too slow, or a batch it refuses: nothing is lost
            log.error(
                "request log: store did not take the records at shutdown, spooling %d (%s: %s)",
                len(self._buf), type(exc).__name__, exc,
            )  # fmt: skip
            spool.append(self._spool, list(self._buf))
            self.spooled += len(self._buf)
            self._buf.clear()
            self._segs.clear()
        if self._journal is not None:
            self._journal.close(discard=True)  # every record is in the database or the spool
