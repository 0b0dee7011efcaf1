"""PostgreSQL backend (several replicas): asyncpg pool, batched inserts with COPY-free executemany.

Every call has a timeout so a database outage surfaces as ``StoreUnavailable`` instead of a hang.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from sluice.store import migrations
from sluice.store.base import StoreUnavailable
from sluice.store.records import GroupBy, KeyRecord, ShadowRow, SpendRow
from sluice.store.rows import RequestRow, key_from_row, key_to_row
from sluice.store.schema_sql import GROUP_COLUMNS, KEY_COLUMNS, REQUEST_COLUMNS, SHADOW_COLUMNS

T = TypeVar("T")
log = logging.getLogger("sluice.store")
_TIMEOUT_S = 5.0
_KEY_SELECT = "SELECT " + ", ".join(KEY_COLUMNS[:-1]) + " FROM keys"
_SHADOW_SELECT = "SELECT " + ", ".join(SHADOW_COLUMNS) + " FROM requests"
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
            raise StoreUnavailable(f"postgres: {type(exc).__name__}: {exc}") from exc

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
        sql = (
            f"SELECT {col} AS g, count(*), sum(CASE WHEN status >= 400 THEN 1 ELSE 0 END), "
            "coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0), coalesce(sum(cost_usd), 0) "
            "FROM requests WHERE ts >= $1 GROUP BY g ORDER BY g"
        )
        rows = await self._call("fetch", sql, since or 0.0)
        return [SpendRow(r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4]), float(r[5])) for r in rows]

    async def count_requests(self) -> int:
        return int(await self._call("fetchval", "SELECT count(*) FROM requests"))

    async def shadow_rows(self, since: float | None) -> list[ShadowRow]:
        sql = _SHADOW_SELECT + " WHERE shadow_of IS NOT NULL AND ts >= $1 ORDER BY ts"
        rows = await self._call("fetch", sql, since or 0.0)
        return [ShadowRow(*tuple(r)) for r in rows]
