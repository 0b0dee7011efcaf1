"""PostgreSQL backend (several replicas): asyncpg pool, batched inserts with COPY-free executemany.

Every call has a timeout so a database outage surfaces as ``StoreUnavailable`` instead of a hang.
Only what says the database cannot serve now (no connection, a timeout, the server out of
resources or shutting down, a read-only failover, a transaction rolled back by the server) becomes
``StoreUnavailable``; a programming or data error (bad SQL, a constraint, a value out of range) is
raised as asyncpg raised it, so it is seen for what it is rather than retried as an outage.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sluice.store.base import StoreUnavailable
from sluice.store.records import GroupBy, KeyRecord, LedgerRow, ShadowRow, SpendRow
from sluice.store.rows import RequestRow, key_from_row, key_to_row, spend_row
from sluice.store.schema_sql import (
    GROUP_COLUMNS,
    KEY_COLUMNS,
    LEDGER_COLUMNS,
    REQUEST_COLUMNS,
    SHADOW_COLUMNS,
    SPEND_AGGREGATES,
    ddl,
)  # fmt: skip

_TIMEOUT_S = 5.0
_KEY_SELECT = "SELECT " + ", ".join(KEY_COLUMNS[:-1]) + " FROM keys"
_SHADOW_SELECT = "SELECT " + ", ".join(SHADOW_COLUMNS) + " FROM requests"
_LEDGER_SELECT = "SELECT " + ", ".join(LEDGER_COLUMNS) + " FROM requests"
_REQ_INSERT = (
    f"INSERT INTO requests ({', '.join(REQUEST_COLUMNS)}) "
    f"VALUES ({', '.join(f'${i + 1}' for i in range(len(REQUEST_COLUMNS)))}) ON CONFLICT (id) DO NOTHING"
)
_KEY_INSERT = f"INSERT INTO keys ({', '.join(KEY_COLUMNS)}) VALUES ({', '.join(f'${i + 1}' for i in range(len(KEY_COLUMNS)))})"


class PostgresStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self._pool: Any = None

    async def open(self) -> None:
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
            async with self._pool.acquire() as conn:
                for stmt in ddl("DOUBLE PRECISION", "BIGINT"):
                    await conn.execute(stmt)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            raise StoreUnavailable(f"cannot open PostgreSQL store: {type(exc).__name__}: {exc}") from exc

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
