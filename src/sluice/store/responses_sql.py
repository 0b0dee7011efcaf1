"""The ``responses`` table (stored Responses API answers) on SQLite and PostgreSQL.

Each backend keeps its own connection (SQLite: one thread of its own, as the main store does;
PostgreSQL: a small pool), so stored responses never queue behind the request-log writer.
Every row belongs to a team; reads and deletes name the team, so one team never sees another's.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeVar

from sluice.store.base import StoreUnavailable

T = TypeVar("T")
_TIMEOUT_S = 5.0


class StoredResponse(NamedTuple):
    id: str
    team: str
    created_at: float
    #: The Response object as JSON (what GET answers).
    body: bytes
    #: The conversation up to and including this answer, as canonical messages (JSON), without
    #: the request's ``instructions``: what ``previous_response_id`` replays.
    conversation: bytes


class ResponseTable(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def put_many(self, rows: Sequence[StoredResponse]) -> None: ...

    async def get(self, response_id: str, team: str, since: float) -> StoredResponse | None: ...

    async def delete(self, response_id: str, team: str) -> bool: ...

    async def purge(self, before: float) -> int:
        """Delete rows created before ``before``; returns how many went."""
        ...


def _ddl(real: str, blob: str) -> list[str]:
    return [
        "CREATE TABLE IF NOT EXISTS responses (id TEXT PRIMARY KEY, team TEXT NOT NULL, "
        f"created_at {real} NOT NULL, body {blob} NOT NULL, conversation {blob} NOT NULL)",
        "CREATE INDEX IF NOT EXISTS responses_created_at ON responses (created_at)",
    ]


_COLUMNS = "id, team, created_at, body, conversation"


class SQLiteResponseTable:
    def __init__(self, path: str) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sluice-responses")
        self._conn: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            if self._conn is None:
                raise StoreUnavailable("response store is not open")
            try:
                return fn(self._conn)
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"sqlite: {exc}") from exc

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def open(self) -> None:
        def connect() -> None:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=5)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=5000")
            for stmt in _ddl("REAL", "BLOB"):
                conn.execute(stmt)
            self._conn = conn

        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, connect)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open sqlite database {self.path}: {exc}") from exc

    async def close(self) -> None:
        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._executor, close)
        self._executor.shutdown(wait=True)

    async def put_many(self, rows: Sequence[StoredResponse]) -> None:
        sql = f"INSERT OR REPLACE INTO responses ({_COLUMNS}) VALUES (?, ?, ?, ?, ?)"

        def insert(c: sqlite3.Connection) -> None:
            c.execute("BEGIN")
            try:
                c.executemany(sql, rows)
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise

        await self._run(insert)

    async def get(self, response_id: str, team: str, since: float) -> StoredResponse | None:
        sql = f"SELECT {_COLUMNS} FROM responses WHERE id = ? AND team = ? AND created_at >= ?"
        row = await self._run(lambda c: c.execute(sql, (response_id, team, since)).fetchone())
        return StoredResponse(row[0], row[1], row[2], bytes(row[3]), bytes(row[4])) if row else None

    async def delete(self, response_id: str, team: str) -> bool:
        sql = "DELETE FROM responses WHERE id = ? AND team = ?"
        return await self._run(lambda c: c.execute(sql, (response_id, team)).rowcount > 0)

    async def purge(self, before: float) -> int:
        return await self._run(
            lambda c: c.execute("DELETE FROM responses WHERE created_at < ?", (before,)).rowcount
        )


class PostgresResponseTable:
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
                self.url, min_size=1, max_size=2, timeout=_TIMEOUT_S, command_timeout=_TIMEOUT_S
            )
            async with self._pool.acquire() as conn:
                for stmt in _ddl("DOUBLE PRECISION", "BYTEA"):
                    await conn.execute(stmt)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            raise StoreUnavailable(f"cannot open PostgreSQL store: {type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _call(self, method: str, sql: str, *args: Any) -> Any:
        import asyncpg

        if self._pool is None:
            raise StoreUnavailable("response store is not open")
        try:
            return await getattr(self._pool, method)(sql, *args, timeout=_TIMEOUT_S)
        except (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
            raise StoreUnavailable(f"postgres: {type(exc).__name__}: {exc}") from exc

    async def put_many(self, rows: Sequence[StoredResponse]) -> None:
        sql = (
            f"INSERT INTO responses ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE "
            "SET body = EXCLUDED.body, conversation = EXCLUDED.conversation"
        )
        await self._call("executemany", sql, [tuple(r) for r in rows])

    async def get(self, response_id: str, team: str, since: float) -> StoredResponse | None:
        sql = f"SELECT {_COLUMNS} FROM responses WHERE id = $1 AND team = $2 AND created_at >= $3"
        row = await self._call("fetchrow", sql, response_id, team, since)
        return StoredResponse(row[0], row[1], row[2], bytes(row[3]), bytes(row[4])) if row else None

    async def delete(self, response_id: str, team: str) -> bool:
        status = await self._call(
            "execute", "DELETE FROM responses WHERE id = $1 AND team = $2", response_id, team
        )
        return str(status) != "DELETE 0"

    async def purge(self, before: float) -> int:
        status = await self._call("execute", "DELETE FROM responses WHERE created_at < $1", before)
        return int(str(status).rsplit(" ", 1)[-1])


def open_table(url: str) -> ResponseTable:
    if url.startswith("sqlite:"):
        from sluice.store.sqlite import sqlite_path

        return SQLiteResponseTable(sqlite_path(url))
    return PostgresResponseTable(url)
