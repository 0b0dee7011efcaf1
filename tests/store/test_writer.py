"""The record writer: batches off the hot path, survives outages, spools at shutdown, replays."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

from sluice.store.base import StoreUnavailable
from sluice.store.records import RequestRecord
from sluice.store.rows import RequestRow
from sluice.store.sqlite import SQLiteStore
from sluice.store.writer import RecordWriter


def _rec(i: int) -> RequestRecord:
    return RequestRecord(id=f"r{i}", ts=time.time(), endpoint="chat", key_id=None, team=None, user=None)


class FlakyStore(SQLiteStore):
    """A real SQLite store that can be switched off, like a database outage."""

    down = False

    async def insert_requests(self, rows: Sequence[RequestRow]) -> None:
        if self.down:
            raise StoreUnavailable("simulated outage")
        await super().insert_requests(rows)


async def test_batches_are_written_in_background(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "w.db"))
    await store.open()
    writer = RecordWriter(store, tmp_path / "spool.jsonl", flush_interval_s=0.01, batch_size=50)
    await writer.start()
    for i in range(120):
        writer.submit(_rec(i))
    await asyncio.sleep(0.2)
    assert await store.count_requests() == 120
    await writer.close()
    await store.close()


async def test_outage_buffers_then_spools_then_replays(tmp_path: Path) -> None:
    spool = tmp_path / "spool.jsonl"
    store = FlakyStore(str(tmp_path / "w.db"))
    await store.open()
    store.down = True
    writer = RecordWriter(store, spool, flush_interval_s=0.01, batch_size=10)
    await writer.start()
    for i in range(25):
        writer.submit(_rec(i))
    await asyncio.sleep(0.1)
    assert writer.pending == 25  # kept in memory while the database is down
    await writer.close(timeout_s=0.2)
    assert spool.exists() and writer.spooled == 25

    store.down = False
    writer2 = RecordWriter(store, spool, flush_interval_s=0.01)
    await writer2.start()  # replays the spool first
    assert not spool.exists()
    assert await store.count_requests() == 25
    await writer2.close()
    await store.close()


async def test_overflow_spills_to_disk_not_lost(tmp_path: Path) -> None:
    spool = tmp_path / "spool.jsonl"
    store = FlakyStore(str(tmp_path / "w.db"))
    await store.open()
    store.down = True
    writer = RecordWriter(store, spool, flush_interval_s=5, batch_size=10, queue_size=5)
    for i in range(12):
        writer.submit(_rec(i))
    assert writer.pending == 5 and writer.spooled == 7
    store.down = False
    await writer.flush()
    writer2 = RecordWriter(store, spool)
    await writer2.start()
    assert await store.count_requests() == 12
    await writer2.close()
    await store.close()
