"""PostgreSQL backend (several replicas): asyncpg pool, batched inserts with COPY-free executemany.

Every call has a timeout so a database outage surfaces as ``StoreUnavailable`` instead of a hang.
Only what says the database cannot serve now (no connection, a timeout, the server out of
resources or shutting down, a read-only failover, a transaction rolled back by the server) becomes
``StoreUnavailable``; a programming or data error (bad SQL, a constraint, a value out of range) is
raised as asyncpg raised it, so it is seen for what it is rather than retried as an outage.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

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
from sluice.store.stats import LatencyRow, StatsBy, postgres_rows, postgres_stats_sql

T = TypeVar("T")
log = logging.getLogger("sluice.store")
_TIMEOUT_S = 5.0
_KEY_SELECT = "SELECT " + ", ".join(KEY_COLUMNS[:-1]) + " FROM keys"
_SHADOW_SELECT = "SELECT " + ", ".join(SHADOW_COLUMNS) + " FROM requests"
_LEDGER_SELECT = "SELECT " + ", ".join(LEDGER_COLUMNS) + " FROM requests"
_REQ_INSERT = (
    f"INSERT INTO requests ({', '.join(REQUEST_COLUMNS)}) "
    f"VALUES ({', '.join(f'${i + 1}' for i in range(len(REQUEST_COLUMNS)))}) ON CONFLICT DO NOTHING"
)
_KEY_INSERT = f"INSERT INTO keys ({', '.join(KEY_COLUMNS)}) VALUES ({', '.join(f'${i + 1}' for i in range(len(KEY_COLUMNS)))})"


#: Day partitions made ahead of today, so a request after midnight always has its partition.
PARTITIONS_AHEAD = 2
_PARTITIONS_SQL = (
    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'requests' ORDER BY 1"
)


def _partition_end(name: str) -> float | None:
    """``requests_p20261201`` -> the epoch second its day ends; None for another table."""
    if not name.startswith("requests_p") or not name[10:].isdigit() or len(name) != 18:
        return None
    day = datetime.strptime(name[10:], "%Y%m%d").replace(tzinfo=UTC)
    return day.timestamp() + 86400


class PostgresStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self._pool: Any = None

    async def open(self, *, migrate: bool = True) -> None:
        try:
            import asyncpg
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise StoreUnavailable(
                "PostgreSQL store needs asyncpg: pip install 'sluice-gateway[postgres]'"
            ) from exc
        try:
            self._pool = await asyncpg.create_pool(
                self.url, min_size=1, max_size=4, timeout=_TIMEOUT_S, command_timeout=_TIMEOUT_S
            )
            if migrate:
                async with self._pool.acquire() as conn:
                    applied = await migrations.pg_migrate(conn)
                if applied:
                    log.info(
                        "store: schema migrated to version %d (%s)", migrations.LATEST, "; ".join(applied)
                    )
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            raise StoreUnavailable(f"cannot open PostgreSQL store: {type(exc).__name__}: {exc}") from exc

    async def prepare_partitions(self, now: float) -> None:
        """Today's partition and the next two days' (one replica at a time; the others skip)."""
        today = int(now // 86400)

        async def create(conn: Any) -> None:
            async with conn.transaction():
                if await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", migrations.PG_LOCK_KEY + 1):
                    await conn.execute(migrations.pg_day_partitions_sql(today, today + PARTITIONS_AHEAD))

        await self._with_conn(create)

    async def purge_before(self, cutoff: float) -> int:
        """Drop the day partitions that end at or before ``cutoff`` (whole days, no row scan);
        delete the older rows of the default partition. Returns the partitions dropped."""

        async def purge(conn: Any) -> int:
            async with conn.transaction():
                if not await conn.fetchval(
                    "SELECT pg_try_advisory_xact_lock($1)", migrations.PG_LOCK_KEY + 1
                ):
                    return 0  # another replica is at it
                names = [r[0] for r in await conn.fetch(_PARTITIONS_SQL)]
                old = [n for n in names if _partition_end(n) is not None and _partition_end(n) <= cutoff]  # type: ignore[operator]
                for name in old:
                    await conn.execute(f'DROP TABLE IF EXISTS "{name}"')
                await conn.execute("DELETE FROM requests_default WHERE ts < $1", cutoff)
                return len(old)

        return await self._with_conn(purge)

    async def migrate(self) -> list[str]:
        return await self._with_conn(migrations.pg_migrate)

    async def schema_status(self) -> migrations.SchemaStatus:
        return await self._with_conn(migrations.pg_status)

    async def _with_conn(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        if self._pool is None:
            raise StoreUnavailable("store is not open")
        try:
            async with self._pool.acquire(timeout=_TIMEOUT_S) as conn:
                return await fn(conn)
        except StoreUnavailable:
            raise
        except Exception as exc:
            raise StoreUnavailable(f"postgres: {type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _call(self, method: str, sql: str, *args: Any) -> Any:
        if self._pool is None:
            raise StoreUnavailable("store is not open")
        try:
            return await getattr(self._pool, method)(sql, *args, timeout=_TIMEOUT_S)
        except Exception as exc:
            if unavailable(exc):
                raise StoreUnavailable(f"postgres: {type(exc).__name__}: {exc}") from exc
            raise

    async def ping(self) -> None:
        await self._call("fetchval", "SELECT 1")

    async def create_key(self, key: KeyRecord) -> None:
        await self._call("execute", _KEY_INSERT, *key_to_row(key, time.time()))

    async def list_keys(self, *, include_revoked: bool = True) -> list[KeyRecord]:
        sql = _KEY_SELECT + ("" if include_revoked else " WHERE revoked_at IS NULL") + " ORDER BY created_at"
        rows = await self._call("fetch", sql)
        return [key_from_row(tuple(r)) for r in rows]

    async def revoke_key(self, key_id: str, at: float) -> bool:
        status = await self._call(
            "execute",
            "UPDATE keys SET revoked_at = $1, updated_at = $2 WHERE id = $3 AND revoked_at IS NULL",
            at,
            time.time(),
            key_id,
        )
        return str(status).endswith(" 1")

    async def keys_version(self) -> tuple[float, int]:
        row = await self._call("fetchrow", "SELECT max(updated_at), count(*) FROM keys")
        return (float(row[0] or 0.0), int(row[1]))

    async def insert_requests(self, rows: Sequence[RequestRow]) -> None:
        await self._call("executemany", _REQ_INSERT, rows)

    async def spend(self, group_by: GroupBy, since: float | None) -> list[SpendRow]:
        col = (
            "to_char(to_timestamp(ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
            if group_by == "day"
            else GROUP_COLUMNS[group_by]
        )
        sql = f"SELECT {col} AS g, {SPEND_AGGREGATES} FROM requests WHERE ts >= $1 GROUP BY g ORDER BY g"
        rows = await self._call("fetch", sql, since or 0.0)
        return [spend_row(r) for r in rows]

    async def latency_stats(self, by: StatsBy, since: float | None) -> list[LatencyRow]:
        counts_sql, tails_sql = postgres_stats_sql(by)
        counts = await self._call("fetch", counts_sql, since or 0.0)
        tails = await self._call("fetch", tails_sql, since or 0.0)
        return postgres_rows(counts, tails)

    async def count_requests(self) -> int:
        return int(await self._call("fetchval", "SELECT count(*) FROM requests"))

    async def shadow_rows(self, since: float | None) -> list[ShadowRow]:
        sql = _SHADOW_SELECT + " WHERE shadow_of IS NOT NULL AND ts >= $1 ORDER BY ts"
        rows = await self._call("fetch", sql, since or 0.0)
        return [ShadowRow(*tuple(r)) for r in rows]

    async def ledger_rows(
        self, since: float, until: float, after_id: str = "", limit: int = 10_000
    ) -> list[LedgerRow]:
        sql = _LEDGER_SELECT + (
            " WHERE ts >= $1 AND ts < $2 AND id > $3 AND attempts_detail LIKE '%\"usage\":{%' ORDER BY id LIMIT $4"
        )
        rows = await self._call("fetch", sql, since, until, after_id, limit)
        return [LedgerRow(*tuple(r)) for r in rows]

    async def spend_by_team_model(self, start: float, end: float) -> list[TeamModelSpend]:
        rows = await self._call("fetch", TEAM_MODEL_SPEND.format(p1="$1", p2="$2"), start, end)
        return [team_model_spend(tuple(r)) for r in rows]

    async def claim_report(self, key: str, at: float) -> bool:
        sql = "INSERT INTO report_runs (key, ts) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING RETURNING key"
        return await self._call("fetchval", sql, key, at) is not None

    async def unclaim_report(self, key: str) -> None:
        await self._call("execute", "DELETE FROM report_runs WHERE key = $1", key)

    # ------------------------------------------------------------------ feedback (store/feedback.py)

    async def request_facts(self, request_id: str) -> RequestFacts | None:
        row = await self._call("fetchrow", REQUEST_FACTS_SELECT + "$1", request_id)
        return RequestFacts(*tuple(row)) if row is not None else None

    async def insert_feedback(self, row: FeedbackRow) -> None:
        cols = ", ".join(FEEDBACK_COLUMNS)
        params = ", ".join(f"${i + 1}" for i in range(len(FEEDBACK_COLUMNS)))
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in FEEDBACK_COLUMNS[1:])
        sql = f"INSERT INTO feedback ({cols}) VALUES ({params}) ON CONFLICT (id) DO UPDATE SET {updates}"
        await self._call("execute", sql, *row.as_tuple())

    async def feedback_rows(self, metric: str | None, since: float | None) -> list[FeedbackRow]:
        sql = (
            f"SELECT {', '.join(FEEDBACK_COLUMNS)} FROM feedback "
            "WHERE ts >= $1 AND ($2::text IS NULL OR metric = $2) ORDER BY ts"
        )
        rows = await self._call("fetch", sql, since or 0.0, metric)
        return [FeedbackRow(*tuple(r)) for r in rows]


def unavailable(exc: BaseException) -> bool:
    """Does ``exc`` say the database cannot serve now (rather than that the call was wrong)?"""
    import asyncpg

    errors = asyncpg.exceptions
    transient = (
        OSError,  # refused, reset, unreachable
        TimeoutError,
        errors.PostgresConnectionError,  # class 08, and the connection lost under a call
        errors.InsufficientResourcesError,  # class 53: too many connections, disk full, out of memory
        errors.OperatorInterventionError,  # class 57: shutting down, cannot connect now, cancelled
        errors.TransactionRollbackError,  # class 40: serialization failure, deadlock
        errors.ReadOnlySQLTransactionError,  # a replica after failover
    )
    if isinstance(exc, transient):
        return True
    # The pool closing or a connection closed under a call: asyncpg says so with an InterfaceError,
    # which otherwise means a wrong call (argument count, types).
    return isinstance(exc, errors.InterfaceError) and ("closed" in str(exc) or "closing" in str(exc))
