"""SQLite backend (the embedded default): WAL mode, one dedicated thread for all database work,
so the event loop never blocks on disk."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from sluice.store import migrations
from sluice.store.base import StoreUnavailable
from sluice.store.feedback import FEEDBACK_COLUMNS, REQUEST_FACTS_SELECT, FeedbackRow, RequestFacts
from sluice.store.records import GroupBy, KeyRecord, LedgerRow, ShadowRow, SpendRow
from sluice.store.reports import TeamModelSpend
from sluice.store.rows import RequestRow, key_from_row, key_to_row, spend_row, team_model_spend
from sluice.store.schema_sql import (
    GROUP_COLUMNS,
    KEY_COLUMNS,
    LEDGER_COLUMNS,
    REQUEST_COLUMNS,
    SHADOW_COLUMNS,
    SPEND_AGGREGATES,
    TEAM_MODEL_SPEND,
)  # fmt: skip
from sluice.store.stats import LatencyRow, StatsBy, sqlite_stats

T = TypeVar("T")
log = logging.getLogger("sluice.store")
_KEY_SELECT = "SELECT " + ", ".join(KEY_COLUMNS[:-1]) + " FROM keys"
_SHADOW_SELECT = "SELECT " + ", ".join(SHADOW_COLUMNS) + " FROM requests"
_LEDGER_SELECT = "SELECT " + ", ".join(LEDGER_COLUMNS) + " FROM requests"
_REQ_INSERT = (
    f"INSERT OR IGNORE INTO requests ({', '.join(REQUEST_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in REQUEST_COLUMNS)})"
)
_KEY_INSERT = f"INSERT INTO keys ({', '.join(KEY_COLUMNS)}) VALUES ({', '.join('?' for _ in KEY_COLUMNS)})"


#: Retention deletes this many rows per statement (a few ms of the database thread), then pauses.
PURGE_BATCH = 1000
PURGE_PAUSE_S = 0.05
_PURGE = "DELETE FROM requests WHERE rowid IN (SELECT rowid FROM requests WHERE ts < ? LIMIT ?)"


def sqlite_path(url: str) -> str:
    """``sqlite:///relative.db`` → ``relative.db``; ``sqlite:////abs.db`` → ``/abs.db``."""
    path = url.split("sqlite://", 1)[1]
    if path.startswith("/"):
        path = path[1:]
    return path or ":memory:"


#: The database thread's nice value: the lowest priority, so a core shared with the event loop
#: lets the loop preempt a batch at once instead of requests waiting out the writer's time slice.
#: Measured on one core at c=1: nice 19 gives a p50 of 0.31 ms, nice 5-15 gives 0.53-0.58 ms (and
#: the batches were the whole p99 tail). The price is paid only when the loop saturates the very
#: core the writer shares (the benchmark pins the gateway to one core): the log then falls behind
#: (8,000 records after 6 s at 3,300 req/s), catches up as soon as the load eases, and is bounded
#: by ``store.queue_size`` (beyond it records are spooled to disk, never dropped). With a core of
#: its own the writer keeps up at any load (sqlite releases the GIL while it writes).
WRITER_NICE = 19


def _lower_thread_priority() -> None:
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WRITER_NICE)


class SQLiteStore:
    def __init__(self, path: str) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="sluice-sqlite", initializer=_lower_thread_priority
        )
        self._conn: sqlite3.Connection | None = None

    @classmethod
    def from_url(cls, url: str) -> SQLiteStore:
        return cls(sqlite_path(url))

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            if self._conn is None:
                raise StoreUnavailable("store is not open")
            try:
                return fn(self._conn)
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"sqlite: {exc}") from exc

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def open(self, *, migrate: bool = True) -> None:
        def connect() -> None:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=5)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=5000")
            if migrate:
                applied = migrations.sqlite_migrate(conn)
                if applied:
                    log.info(
                        "store: schema migrated to version %d (%s)", migrations.LATEST, "; ".join(applied)
                    )
            self._conn = conn

        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, connect)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open sqlite database {self.path}: {exc}") from exc

    async def prepare_partitions(self, now: float) -> None:
        return None  # one table; retention deletes rows

    async def purge_before(self, cutoff: float) -> int:
        """Delete rows older than ``cutoff`` in small batches, each its own short transaction on
        the database thread, with a pause between, so the request log's inserts interleave."""
        total = 0
        while True:
            n = await self._run(lambda c: c.execute(_PURGE, (cutoff, PURGE_BATCH)).rowcount)
            total += n
            if n < PURGE_BATCH:
                return total
            await asyncio.sleep(PURGE_PAUSE_S)

    async def migrate(self) -> list[str]:
        return await self._run(migrations.sqlite_migrate)

    async def schema_status(self) -> migrations.SchemaStatus:
        return await self._run(migrations.sqlite_status)

    async def close(self) -> None:
        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._executor, close)
        self._executor.shutdown(wait=True)

    async def ping(self) -> None:
        await self._run(lambda c: c.execute("SELECT 1").fetchone())

    async def create_key(self, key: KeyRecord) -> None:
        row = key_to_row(key, time.time())
        await self._run(lambda c: c.execute(_KEY_INSERT, row))

    async def list_keys(self, *, include_revoked: bool = True) -> list[KeyRecord]:
        sql = _KEY_SELECT + ("" if include_revoked else " WHERE revoked_at IS NULL") + " ORDER BY created_at"
        rows = await self._run(lambda c: c.execute(sql).fetchall())
        return [key_from_row(r) for r in rows]

    async def revoke_key(self, key_id: str, at: float) -> bool:
        def revoke(c: sqlite3.Connection) -> bool:
            cur = c.execute(
                "UPDATE keys SET revoked_at = ?, updated_at = ? WHERE id = ? AND revoked_at IS NULL",
                (at, time.time(), key_id),
            )
            return cur.rowcount > 0

        return await self._run(revoke)

    async def keys_version(self) -> tuple[float, int]:
        row = await self._run(lambda c: c.execute("SELECT max(updated_at), count(*) FROM keys").fetchone())
        return (float(row[0] or 0.0), int(row[1]))

    async def insert_requests(self, rows: Sequence[RequestRow]) -> None:

        def insert(c: sqlite3.Connection) -> None:
            c.execute("BEGIN")
            try:
                c.executemany(_REQ_INSERT, rows)
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise

        await self._run(insert)

    async def spend(self, group_by: GroupBy, since: float | None) -> list[SpendRow]:
        col = "strftime('%Y-%m-%d', ts, 'unixepoch')" if group_by == "day" else GROUP_COLUMNS[group_by]
        sql = f"SELECT {col} AS g, {SPEND_AGGREGATES} FROM requests WHERE ts >= ? GROUP BY g ORDER BY g"
        rows = await self._run(lambda c: c.execute(sql, (since or 0.0,)).fetchall())
        return [spend_row(r) for r in rows]

    async def latency_stats(self, by: StatsBy, since: float | None) -> list[LatencyRow]:
        return await self._run(lambda c: sqlite_stats(c, by, since))

    async def count_requests(self) -> int:
        row = await self._run(lambda c: c.execute("SELECT count(*) FROM requests").fetchone())
        return int(row[0])

    async def shadow_rows(self, since: float | None) -> list[ShadowRow]:
        sql = _SHADOW_SELECT + " WHERE shadow_of IS NOT NULL AND ts >= ? ORDER BY ts"
        rows = await self._run(lambda c: c.execute(sql, (since or 0.0,)).fetchall())
        return [ShadowRow(*r) for r in rows]

    async def ledger_rows(
        self, since: float, until: float, after_id: str = "", limit: int = 10_000
    ) -> list[LedgerRow]:
        sql = _LEDGER_SELECT + (
            " WHERE ts >= ? AND ts < ? AND id > ? AND attempts_detail LIKE '%\"usage\":{%' ORDER BY id LIMIT ?"
        )
        rows = await self._run(lambda c: c.execute(sql, (since, until, after_id, limit)).fetchall())
        return [LedgerRow(*r) for r in rows]

    async def spend_by_team_model(self, start: float, end: float) -> list[TeamModelSpend]:
        sql = TEAM_MODEL_SPEND.format(p1="?", p2="?")
        rows = await self._run(lambda c: c.execute(sql, (start, end)).fetchall())
        return [team_model_spend(r) for r in rows]

    async def claim_report(self, key: str, at: float) -> bool:
        def claim(c: sqlite3.Connection) -> bool:
            return (
                c.execute("INSERT OR IGNORE INTO report_runs (key, ts) VALUES (?, ?)", (key, at)).rowcount
                == 1
            )

        return await self._run(claim)

    async def unclaim_report(self, key: str) -> None:
        await self._run(lambda c: c.execute("DELETE FROM report_runs WHERE key = ?", (key,)))

    # ------------------------------------------------------------------ feedback (store/feedback.py)

    async def request_facts(self, request_id: str) -> RequestFacts | None:
        row = await self._run(lambda c: c.execute(REQUEST_FACTS_SELECT + "?", (request_id,)).fetchone())
        return RequestFacts(*row) if row is not None else None

    async def insert_feedback(self, row: FeedbackRow) -> None:
        sql = f"INSERT OR REPLACE INTO feedback ({', '.join(FEEDBACK_COLUMNS)}) VALUES ({', '.join('?' * len(FEEDBACK_COLUMNS))})"
        await self._run(lambda c: c.execute(sql, row.as_tuple()))

    async def feedback_rows(self, metric: str | None, since: float | None) -> list[FeedbackRow]:
        sql = f"SELECT {', '.join(FEEDBACK_COLUMNS)} FROM feedback WHERE ts >= ? AND (? IS NULL OR metric = ?) ORDER BY ts"
        rows = await self._run(lambda c: c.execute(sql, (since or 0.0, metric, metric)).fetchall())
        return [FeedbackRow(*r) for r in rows]
