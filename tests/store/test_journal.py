"""The request journal: every submitted record is on disk at once; segments go once stored;
a writer that dies without closing leaves segments the next start replays, exactly once."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from sluice.store import spool
from sluice.store.journal import MAX_SLOTS, Journal, JournalLocked
from sluice.store.records import RequestRecord
from sluice.store.sqlite import SQLiteStore
from sluice.store.writer import RecordWriter
from tests.store.test_writer import FlakyStore


def _rec(i: int) -> RequestRecord:
    return RequestRecord(id=f"r{i}", ts=time.time(), endpoint="chat", key_id=None, team="eng", user=None)


def _journal_lines(base: Path) -> list[str]:
    ids = []
    for p in sorted(base.parent.glob(base.name + ".journal-*.0*")):
        ids += [json.loads(line)[0] for line in p.read_text().splitlines() if line.strip()]
    return ids


async def _until(cond, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_each_record_is_on_disk_when_submit_returns_and_trimmed_once_stored(tmp_path: Path) -> None:
    base = tmp_path / "j.db"
    store = FlakyStore(str(base))
    await store.open()
    store.down = True
    writer = RecordWriter(store, tmp_path / "s.jsonl", flush_interval_s=0.01, journal=Journal(base))
    await writer.start()
    for i in range(30):
        writer.submit(_rec(i))
        assert _journal_lines(base)[-1] == f"r{i}"  # written before submit returned
    await asyncio.sleep(0.1)  # the database is down: the journal keeps everything
    assert sorted(_journal_lines(base)) == sorted(f"r{i}" for i in range(30))
    store.down = False
    await _until(lambda: writer.written == 30)
    await _until(lambda: _journal_lines(base) == [])
    writer.submit(_rec(99))
    assert _journal_lines(base) == ["r99"]
    await writer.close()
    assert list(tmp_path.glob("j.db.journal-*.0*")) == []  # a clean stop leaves no segment
    await store.close()


async def test_a_crashed_writer_is_replayed_exactly_once(tmp_path: Path) -> None:
    base = tmp_path / "j.db"
    store = FlakyStore(str(base))
    await store.open()
    store.down = True
    crashed = RecordWriter(store, tmp_path / "s.jsonl", flush_interval_s=0.01, journal=Journal(base))
    await crashed.start()
    for i in range(50):
        crashed.submit(_rec(i))
    store.down = False
    await _until(lambda: crashed.written >= 50)  # stored, but (maybe) not trimmed yet
    for i in range(50, 80):
        crashed.submit(_rec(i))
    store.down = True
    # "kill -9": the writer never closes; its task and lock die with the process.
    assert crashed._task is not None
    crashed._task.cancel()
    journal = crashed._journal
    assert journal is not None and journal._lock_fd is not None
    os.close(journal._lock_fd)  # the kernel releases the lock of a dead process
    # a torn last line, as a kill in the middle of an append can leave
    seg = sorted(tmp_path.glob("j.db.journal-0.0*"))[-1]
    with seg.open("a") as f:
        f.write('["r-torn", 1.0, "ch')
    store.down = False
    restarted = RecordWriter(store, tmp_path / "s.jsonl", flush_interval_s=0.01, journal=Journal(base))
    await restarted.start()
    await _until(lambda: restarted.replayed >= 30)
    await asyncio.sleep(0.05)
    assert await store.count_requests() == 80
    await restarted.close()
    await store.close()


def test_processes_sharing_a_base_take_slots_and_adopt_dead_neighbours(tmp_path: Path) -> None:
    base = tmp_path / "shared"
    adopted: list[Path] = []

    def adopt(paths: object) -> int:
        adopted.extend(paths)  # type: ignore[arg-type]
        return 0

    a, b = Journal(base), Journal(base)
    a.open(adopt)
    b.open(adopt)
    assert (a.slot, b.slot) == (0, 1)
    b.append(("x", 1.0))
    assert b.rotate() is not None
    # b dies (its lock is released by the kernel); c starts and takes slot 1 with its leftovers
    assert b._lock_fd is not None
    os.close(b._lock_fd)
    c = Journal(base)
    c.open(lambda paths: spool.adopt(tmp_path / "spool.jsonl", paths))
    assert c.slot == 1 and c.segment == 1
    assert (tmp_path / "spool.jsonl").read_text().strip() == '["x",1.0]'
    assert not list(tmp_path.glob("shared.journal-1.0*"))
    a.close(discard=True)
    c.close(discard=True)


def test_all_slots_taken_is_a_clear_error(tmp_path: Path) -> None:
    holders = [Journal(tmp_path / "b") for _ in range(MAX_SLOTS)]
    for j in holders:
        j.open(lambda paths: 0)
    with pytest.raises(JournalLocked, match="slots"):
        Journal(tmp_path / "b").open(lambda paths: 0)
    for j in holders:
        j.close(discard=True)


async def test_journal_off_writes_no_file(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "n.db"))
    await store.open()
    writer = RecordWriter(store, tmp_path / "s.jsonl", flush_interval_s=0.01)
    await writer.start()
    writer.submit(_rec(1))
    assert not list(tmp_path.glob("*.journal*"))
    await writer.close()
    await store.close()
