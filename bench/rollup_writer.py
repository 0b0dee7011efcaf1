"""What rollups cost the record writer: CPU microseconds per record for the store's batch insert
with rollups (as the gateway runs it) against the bare insert of the same rows, SQLite, in batches
of ``store.batch_size`` (500). The writer runs off the request path (its own thread for SQLite);
this is the CPU it takes from the machine. The records arrive in time order, spread over
``--hours`` (as a gateway's batches do: each holds the requests of a fraction of a second).

    .venv/bin/python bench/rollup_writer.py [--records N] [--batch 500]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from console_scale import records

from sluice.store.base import create_store
from sluice.store.rows import request_to_row
from sluice.store.schema_sql import REQUEST_COLUMNS, ddl


def bare(path: str, batches: list[list[tuple[object, ...]]]) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    for stmt in ddl("REAL", "INTEGER"):
        conn.execute(stmt)
    sql = f"INSERT OR IGNORE INTO requests ({', '.join(REQUEST_COLUMNS)}) VALUES ({', '.join('?' for _ in REQUEST_COLUMNS)})"
    t0 = time.process_time()
    for b in batches:
        conn.execute("BEGIN")
        conn.executemany(sql, b)
        conn.execute("COMMIT")
    return time.process_time() - t0


async def with_rollups(path: str, batches: list[list[tuple[object, ...]]]) -> float:
    store = create_store(f"sqlite:///{path}")
    await store.open()
    t0 = time.process_time()
    for b in batches:
        await store.insert_requests(b)
    spent = time.process_time() - t0
    await store.close()
    return spent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--hours", type=float, default=1.0, help="the records' time span")
    args = ap.parse_args()
    generated = sorted(records(args.records, days=args.hours / 24), key=lambda r: r.ts)  # type: ignore[arg-type]
    rows = [request_to_row(r) for r in generated]
    batches = [rows[i : i + args.batch] for i in range(0, len(rows), args.batch)]
    with tempfile.TemporaryDirectory() as tmp:
        plain = bare(f"{tmp}/bare.db", batches)
        rolled = asyncio.run(with_rollups(f"{tmp}/rollups.db", batches))
    n = len(rows)
    print(f"bare insert:        {plain / n * 1e6:6.1f} CPU us/record")
    print(f"insert + rollups:   {rolled / n * 1e6:6.1f} CPU us/record  (+{(rolled - plain) / n * 1e6:.1f})")


if __name__ == "__main__":
    main()
