"""Batched, off-the-hot-path writing of request records.

``submit`` is a non-blocking append. A background task flushes batches every ``flush_interval_s``
(or as soon as a batch is full). When the database fails, records stay buffered and the flush is
retried with backoff; beyond ``queue_size`` buffered records, and at shutdown if the database is
still down, records are appended to a spool file (JSON lines) that is replayed on the next start.
So no record is lost to an outage or a graceful shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections import deque
from collections.abc import Iterable
from pathlib import Path

from sluice.store.base import Store, StoreUnavailable
from sluice.store.records import RequestRecord
from sluice.store.rows import RequestRow, request_to_row

log = logging.getLogger("sluice.store")


class RecordWriter:
    def __init__(
        self,
        store: Store,
        spool_path: Path,
        *,
        flush_interval_s: float = 0.25,
        batch_size: int = 500,
        queue_size: int = 200_000,
    ) -> None:
        self._store = store
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
        self.written = 0
        self.spooled = 0

    def submit(self, record: RequestRecord) -> None:
        self._buf.append(request_to_row(record))
        if len(self._buf) >= self._batch:
            self._wake.set()
        if len(self._buf) > self._limit:
            self._spill(self._buf.popleft() for _ in range(len(self._buf) - self._limit))

    @property
    def pending(self) -> int:
        return len(self._buf)

    async def start(self) -> None:
        await self._replay_spool()
        self._task = asyncio.create_task(self._run(), name="sluice-record-writer")

    async def flush(self) -> None:
        """Write everything buffered now (raises StoreUnavailable if the database is down)."""
        while self._buf:
            batch = [self._buf.popleft() for _ in range(min(self._batch, len(self._buf)))]
            try:
                await self._store.insert_requests(batch)
            except BaseException:
                self._buf.extendleft(reversed(batch))
                raise
            self.written += len(batch)

    async def _run(self) -> None:
        backoff = self._interval
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
            self._wake.clear()
            try:
                await self.flush()
                backoff = self._interval
            except StoreUnavailable as exc:
                backoff = min(max(backoff * 2, 0.5), 10.0)
                log.warning("request log: store unavailable, %d records buffered (%s)", len(self._buf), exc)

    async def close(self, timeout_s: float = 10.0) -> None:
        """Stop the task and write what is left; spool to disk whatever the database won't take."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            await asyncio.wait_for(self.flush(), timeout=timeout_s)
        except (StoreUnavailable, TimeoutError) as exc:
            log.error(
                "request log: store unavailable at shutdown, spooling %d records (%s)", len(self._buf), exc
            )
            self._spill(list(self._buf))
            self._buf.clear()

    def _spill(self, rows: Iterable[RequestRow]) -> None:
        lines = [json.dumps(list(r)) for r in rows]
        if not lines:
            return
        self._spool.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._spool, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        self.spooled += len(lines)

    async def _replay_spool(self) -> None:
        if not self._spool.exists():
            return
        with self._spool.open(encoding="utf-8") as f:
            records = [tuple(json.loads(line)) for line in f if line.strip()]
        try:
            for i in range(0, len(records), self._batch):
                # Inserts ignore ids already present, so a replay cut short is safe to repeat.
                await self._store.insert_requests(records[i : i + self._batch])
        except StoreUnavailable as exc:
            log.warning("request log: spool kept for the next start, store unavailable (%s)", exc)
            return
        self._spool.unlink()
        log.info("request log: replayed %d spooled records", len(records))
