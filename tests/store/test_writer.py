"""The record writer: batches off the hot path, survives outages, spools at shutdown, replays."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from sluice.store import spool
from sluice.store.base import StoreUnavailable
from sluice.store.records import RequestRecord
from sluice.store.rows import RequestRow, request_to_row
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


async def _until(cond, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_outage_buffers_then_spools_then_replays(tmp_path: Path) -> None:
    spool_file = tmp_path / "spool.jsonl"
    store = FlakyStore(str(tmp_path / "w.db"))
    await store.open()
    store.down = True
    writer = RecordWriter(store, spool_file, flush_interval_s=0.01, batch_size=10)
    await writer.start()
    for i in range(25):
        writer.submit(_rec(i))
    await asyncio.sleep(0.1)
    assert writer.pending == 25  # kept in memory while the database is down
    await writer.close(timeout_s=0.2)
    assert spool_file.exists() and writer.spooled == 25

    store.down = False
    writer2 = RecordWriter(store, spool_file, flush_interval_s=0.01)
    await writer2.start()  # replays the spool in the background, at once
    await _until(lambda: writer2.replayed == 25)
    assert not spool_file.exists() and not spool.replay_path(spool_file).exists()
    assert await store.count_requests() == 25
    await writer2.close()
    await store.close()


async def test_overflow_spills_off_the_loop_and_replays_once_caught_up(tmp_path: Path, monkeypatch) -> None:
    spool_file = tmp_path / "spool.jsonl"
    store = FlakyStore(str(tmp_path / "w.db"))
    await store.open()
    store.down = True
    threads: list[int] = []
    append = spool.append

    def spy(path: Path, rows: Sequence[RequestRow]) -> None:
        threads.append(threading.get_ident())
        append(path, rows)

    monkeypatch.setattr(spool, "append", spy)
    writer = RecordWriter(store, spool_file, flush_interval_s=0.01, batch_size=4, queue_size=5)
    await writer.start()
    for i in range(30):
        writer.submit(_rec(i))
        await asyncio.sleep(0.002)
    await _until(lambda: writer._spill is None)
    assert writer.spooled > 0 and writer.pending == 30  # spooled records count until replayed
    assert len(threads) <= writer.spooled / 4  # a batch or more per hand-off, not a record at a time
    assert threads and threading.get_ident() not in threads  # the event loop never touched the disk
    assert spool_file.exists()

    store.down = False  # traffic goes on: the buffer is written, then the spool, without a restart
    for i in range(30, 34):
        writer.submit(_rec(i))
    await _until(lambda: writer.replayed == writer.spooled and writer.pending == 0)
    assert await store.count_requests() == 34
    assert not spool_file.exists() and not spool.replay_path(spool_file).exists()
    await writer.close()
    await store.close()


async def test_spool_write_failure_keeps_records_in_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    store = FlakyStore(str(tmp_path / "w.db"))
    await store.open()
    store.down = True
    writer = RecordWriter(store, blocker / "spool.jsonl", flush_interval_s=0.01, batch_size=2, queue_size=3)
    await writer.start()
    for i in range(10):
        writer.submit(_rec(i))  # never raises into the request that submits
    await _until(lambda: writer._spill is None)
    assert writer.pending == 10 and writer.spooled == 0
    store.down = False
    writer.submit(_rec(10))  # a full batch wakes the writer
    await _until(lambda: writer.pending == 0)
    assert await store.count_requests() == 11
    await writer.close()
    await store.close()


async def test_a_replay_cut_short_is_finished_at_the_next_start(tmp_path: Path) -> None:
    spool_file = tmp_path / "spool.jsonl"
    store = SQLiteStore(str(tmp_path / "w.db"))
    await store.open()
    rows = [request_to_row(_rec(i)) for i in range(7)]
    await store.insert_requests(rows[:3])  # the part that made it before the cut
    spool.append(spool.replay_path(spool_file), rows)
    spool.append(spool_file, [request_to_row(_rec(i)) for i in range(7, 9)])  # spilled meanwhile
    writer = RecordWriter(store, spool_file, flush_interval_s=0.01, batch_size=2)
    await writer.start()
    await _until(lambda: not spool_file.exists() and not spool.replay_path(spool_file).exists())
    assert await store.count_requests() == 9
    await writer.close()
    await store.close()


async def test_a_torn_spool_line_is_skipped_not_fatal(tmp_path: Path) -> None:
    """A writer killed mid-append leaves a partial last line: the rest is replayed, and the
    writer keeps writing new records."""
    spool_file = tmp_path / "spool.jsonl"
    spool.append(spool_file, [request_to_row(_rec(i)) for i in range(3)])
    with spool_file.open("a", encoding="utf-8") as f:
        f.write('["r9", 17')  # torn
    store = SQLiteStore(str(tmp_path / "w.db"))
    await store.open()
    writer = RecordWriter(store, spool_file, flush_interval_s=0.01, batch_size=2)
    await writer.start()
    await _until(lambda: writer.replayed == 3)
    await _until(lambda: not spool_file.exists() and not spool.replay_path(spool_file).exists())
    writer.submit(_rec(10))
    writer.submit(_rec(11))
    await _until(lambda: writer.written == 2)
    assert await store.count_requests() == 5
    await writer.close()
    await store.close()
