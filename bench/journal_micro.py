"""Micro-benchmark of the request journal: ``.venv/bin/python bench/journal_micro.py [dir]``.

Reports the CPU µs the event loop spends per ``RecordWriter.submit`` with ``store.journal`` off
and on (the row encoded and one ``write(2)``), and the wall ms of the ``fdatasync`` the writer's
thread does per flush cycle (off the loop). The store is a SQLite file in ``dir`` (default: a
temporary directory); batches are written as in the gateway. Never part of the test run.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from sluice.store.journal import Journal, sync_and_close
from sluice.store.records import RequestRecord
from sluice.store.sqlite import SQLiteStore
from sluice.store.writer import RecordWriter

N = 20_000


def _record(i: int) -> RequestRecord:
    return RequestRecord(
        id=f"req_{i:012d}", ts=time.time(), endpoint="chat", key_id="key_0123456789", team="search",
        user="u-42", tags=["a"], requested_model="gpt-4o-mini", served_model="gpt-4o-mini",
        provider="openai", route="cheap-default", prompt_tokens=812, completion_tokens=164,
        cost_usd=0.000222, latency_ms=412.7, ttft_ms=88.1, attempts=1,
        attempts_detail='[{"provider":"openai","model":"gpt-4o-mini","status":200,"latency_ms":410.2}]',
        route_reason='{"route":"cheap-default","matched":{"task":"summarize"}}', policy_version="0f3a9c1d2e4b5a6f",
    )  # fmt: skip


async def per_submit(directory: Path, journal: bool) -> float:
    tag = "on" if journal else "off"
    store = SQLiteStore(str(directory / f"bench-{tag}.db"))
    await store.open()
    writer = RecordWriter(
        store,
        directory / f"bench-{tag}.spool",
        journal=Journal(directory / f"bench-{tag}") if journal else None,
    )
    await writer.start()
    records = [_record(i) for i in range(N)]
    cpu = 0.0
    for chunk in range(0, N, 500):  # bursts, as requests finish, with the writer's turns between them
        t0 = time.thread_time()
        for r in records[chunk : chunk + 500]:
            writer.submit(r)
        cpu += time.thread_time() - t0
        await asyncio.sleep(0.005)
    await writer.close()
    await store.close()
    return cpu / N * 1e6


def fsync_ms(directory: Path, rows: int) -> float:
    journal = Journal(directory / "bench-sync")
    journal.open(lambda paths: 0)
    times = []
    for _ in range(20):
        for i in range(rows):
            journal.append(("req", float(i), "x" * 300))
        fd = journal.rotate()
        assert fd is not None
        t0 = time.perf_counter()
        sync_and_close(fd)
        times.append(time.perf_counter() - t0)
    journal.close(discard=True)
    times.sort()
    return times[len(times) // 2] * 1e3


async def main() -> None:
    directory = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="sluice-journal-"))
    off = min([await per_submit(directory, False) for _ in range(3)])
    on = min([await per_submit(directory, True) for _ in range(3)])
    print(f"submit, journal off: {off:6.2f} CPU us per record")
    print(f"submit, journal on:  {on:6.2f} CPU us per record (+{on - off:.2f})")
    for rows in (10, 250, 2500):
        print(
            f"fdatasync per flush cycle, {rows:5d} records: {fsync_ms(directory, rows):7.3f} ms (writer thread)"
        )


if __name__ == "__main__":
    asyncio.run(main())
