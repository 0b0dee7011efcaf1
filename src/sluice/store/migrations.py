"""The store's schema, versioned: an ordered list of steps, applied once each, under a lock.

How a database is brought up to date (``sluice db migrate``, and every ``open`` of a store, so
``sluice serve`` migrates at start):

1. Take the lock: a PostgreSQL advisory lock held by the migrating transaction (several replicas
   starting together: one migrates, the others wait and then find nothing to do), or SQLite's
   write lock (``BEGIN IMMEDIATE``). The whole migration is one transaction on both: it applies
   completely or not at all.
2. Create the tables of :func:`sluice.store.schema_sql.ddl` that do not exist (a new database gets
   the current schema at once).
3. Apply every step in :data:`STEPS` newer than the version recorded in ``schema_version``.
   Each step is idempotent (a column that exists is skipped), so a database made before versions
   were recorded (version 0: the first commits of this project) is upgraded by applying them all.
4. Create the indexes of ``ddl`` that do not exist, and record the new version.

How to add a column or a table (the only thing to do besides the ``ddl`` text):

- a column: append ``AddColumn("requests", "saved_usd", "{real}")`` to :data:`STEPS` (and the
  column at the end of ``ddl``'s table and of ``REQUEST_COLUMNS``). Types are written with the
  placeholders ``{real}``, ``{bigint}`` (filled in per database) or plain SQL (``TEXT``,
  ``INTEGER``). A ``NOT NULL`` column needs a default: ``"INTEGER NOT NULL DEFAULT 0"``.
- a table: add its ``CREATE TABLE IF NOT EXISTS`` to ``ddl`` and append
  ``CreateTable("feedback")`` to :data:`STEPS` (step 2 creates it; the entry gives it a version).

``tests/store/test_migrations.py`` upgrades a database made by an old commit and compares it with
a new one, column by column: a column added to ``ddl`` without its step fails there.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Any, Protocol

from sluice.store.schema_sql import ddl

#: The PostgreSQL advisory lock key for migrations (any constant shared by every replica).
PG_LOCK_KEY = 0x51C3_D8A1

_TYPES = {
    "sqlite": {"real": "REAL", "bigint": "INTEGER"},
    "postgres": {"real": "DOUBLE PRECISION", "bigint": "BIGINT"},
}


class Step(Protocol):
    @property
    def description(self) -> str: ...

    def statements(self, dialect: str, columns: set[str]) -> list[str]:
        """The SQL to run, given the columns ``table`` has now (empty if it does not exist)."""
        ...

    @property
    def table(self) -> str: ...


@dataclass(frozen=True, slots=True)
class AddColumn:
    table: str
    column: str
    type: str

    @property
    def description(self) -> str:
        return f"add {self.table}.{self.column}"

    def statements(self, dialect: str, columns: set[str]) -> list[str]:
        if self.column in columns:
            return []
        sql_type = self.type.format(**_TYPES[dialect])
        return [f"ALTER TABLE {self.table} ADD COLUMN {self.column} {sql_type}"]


@dataclass(frozen=True, slots=True)
class CreateTable:
    """A table ``ddl`` creates (step 2 of the module docstring); the entry gives it a version."""

    table: str

    @property
    def description(self) -> str:
        return f"create table {self.table}"

    def statements(self, dialect: str, columns: set[str]) -> list[str]:
        return []


@dataclass(frozen=True, slots=True)
class Backfill:
    """Fill a column added by an earlier step from the row's other columns (an ``UPDATE`` that
    touches only rows still missing it, so running it twice changes nothing)."""

    table: str
    column: str
    #: The SQL expression; ``{real}``/``{bigint}`` placeholders as in :class:`AddColumn`.
    expression: str
    where: str

    @property
    def description(self) -> str:
        return f"fill {self.table}.{self.column}"

    def statements(self, dialect: str, columns: set[str]) -> list[str]:
        expression = self.expression.format(**_TYPES[dialect])
        return [
            f"UPDATE {self.table} SET {self.column} = {expression} WHERE {self.column} IS NULL AND {self.where}"
        ]


@dataclass(frozen=True, slots=True)
class PartitionRequestsByDay:
    """PostgreSQL only: ``requests`` becomes a table partitioned by UTC day on ``ts`` (one
    partition per day, ``requests_pYYYYMMDD``, plus ``requests_default`` for rows outside every
    partition), so retention drops whole days. Existing rows are copied into their days'
    partitions. The primary key becomes ``(id, ts)`` (a partitioned table's unique keys must
    contain the partition key); a record's id and ts never change, so inserts that ignore
    repeats still ignore them."""

    table: str = "requests"

    @property
    def description(self) -> str:
        return "partition requests by day (PostgreSQL)"

    def statements(self, dialect: str, columns: set[str]) -> list[str]:
        if dialect != "postgres":
            return []
        return [
            "ALTER TABLE requests RENAME TO requests_unpartitioned",
            "ALTER TABLE requests_unpartitioned RENAME CONSTRAINT requests_pkey TO requests_unpartitioned_pkey",
            "CREATE TABLE requests (LIKE requests_unpartitioned INCLUDING DEFAULTS) PARTITION BY RANGE (ts)",
            "ALTER TABLE requests ADD PRIMARY KEY (id, ts)",
            "CREATE TABLE requests_default PARTITION OF requests DEFAULT",
            _PG_DAY_PARTITIONS.format(
                source="SELECT DISTINCT floor(ts / 86400)::bigint FROM requests_unpartitioned"
            ),
            "INSERT INTO requests SELECT * FROM requests_unpartitioned",
            "DROP TABLE requests_unpartitioned",  # and its indexes: step 4 makes them on the new table
        ]


#: Create the day partitions of ``requests`` for the day numbers (days since the epoch, UTC)
#: ``source`` selects, if missing. Rows of such a day already in the default partition (written
#: while no partition existed: a long outage of the upkeep) are moved into the new partition
#: before it is attached, which attaching requires. Shared by the migration and
#: ``PostgresStore.prepare_partitions``.
_PG_DAY_PARTITIONS = """DO $$
DECLARE
  d bigint;
  name text;
BEGIN
  FOR d IN {source} LOOP
    name := 'requests_p' || to_char(to_timestamp(d * 86400) AT TIME ZONE 'UTC', 'YYYYMMDD');
    IF to_regclass(name) IS NULL THEN
      EXECUTE format('CREATE TABLE %I (LIKE requests INCLUDING DEFAULTS)', name);
      EXECUTE format('WITH moved AS (DELETE FROM requests_default WHERE ts >= %s AND ts < %s RETURNING *) '
                     'INSERT INTO %I SELECT * FROM moved', d * 86400, (d + 1) * 86400, name);
      EXECUTE format('ALTER TABLE requests ATTACH PARTITION %I FOR VALUES FROM (%s) TO (%s)',
                     name, d * 86400, (d + 1) * 86400);
    END IF;
  END LOOP;
END $$"""


def pg_day_partitions_sql(first_day: int, last_day: int) -> str:
    return _PG_DAY_PARTITIONS.format(source=f"SELECT generate_series({int(first_day)}, {int(last_day)})")


#: Version N is the database after STEPS[:N]. Never edit or reorder a released entry: append.
STEPS: tuple[Step, ...] = (
    CreateTable("keys"),  # 1: the first schema (commit 2b76b23): keys and requests up to `note`
    CreateTable("requests"),
    AddColumn("requests", "route_reason", "TEXT"),  # 3-5: routing (commit 0a834bb)
    AddColumn("requests", "shadow_of", "TEXT"),
    AddColumn("requests", "comparison", "TEXT"),
    AddColumn("requests", "policy_version", "TEXT"),  # 6: hot reload: the policy a request was served under
    PartitionRequestsByDay(),  # 7: retention drops whole days (PostgreSQL; nothing on SQLite)
    AddColumn("requests", "cost_nusd", "{bigint}"),  # 8-11: the exact ledger (nano-USD, its prices)
    AddColumn("requests", "prices", "TEXT"),
    AddColumn("requests", "cost_estimated", "INTEGER NOT NULL DEFAULT 0"),
    Backfill(
        "requests", "cost_nusd", "CAST(ROUND(cost_usd * 1000000000) AS {bigint})", "cost_usd IS NOT NULL"
    ),
    CreateTable("report_runs"),  # 12: scheduled reports, each period claimed once
    CreateTable("feedback"),  # 13: feedback on answers (adaptive routing)
    AddColumn("requests", "guardrails", "TEXT"),  # 14-16: guardrail verdicts, logged payloads
    AddColumn("requests", "request_body", "TEXT"),
    AddColumn("requests", "response_body", "TEXT"),
    AddColumn("requests", "cache", "TEXT"),  # 17-18: answered by the response cache, and what it saved
    AddColumn("requests", "saved_usd", "{real}"),
)

LATEST = len(STEPS)

_VERSION_DDL = (
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
    "description TEXT NOT NULL, applied_at {real} NOT NULL)"
)


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    version: int
    latest: int
    #: Descriptions of the steps a migration would apply.
    pending: tuple[str, ...]

    @property
    def current(self) -> bool:
        return self.version >= self.latest


def _split_ddl(dialect: str) -> tuple[list[str], list[str]]:
    types = _TYPES[dialect]
    stmts = ddl(types["real"], types["bigint"])
    tables = [s for s in stmts if s.lstrip().upper().startswith("CREATE TABLE")]
    return tables, [s for s in stmts if s not in tables]


def pending(version: int) -> tuple[str, ...]:
    return tuple(s.description for s in STEPS[version:])


# --- SQLite -------------------------------------------------------------------------------------


def _sqlite_columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in conn.execute(f"PRAGMA table_info({table})").fetchall()}


def _sqlite_version(conn: sqlite3.Connection) -> int:
    if not _sqlite_columns(conn, "schema_version"):
        return 0
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def sqlite_status(conn: sqlite3.Connection) -> SchemaStatus:
    version = _sqlite_version(conn)
    return SchemaStatus(version, LATEST, pending(version))


def sqlite_migrate(conn: sqlite3.Connection) -> list[str]:
    """Bring the database up to date in one transaction; returns the steps applied.
    ``conn`` is in autocommit mode (``isolation_level=None``)."""
    conn.execute(
        "BEGIN IMMEDIATE"
    )  # the write lock: a second process waits (busy_timeout), then sees it done
    try:
        applied = _sqlite_apply(conn)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return applied


def _sqlite_apply(conn: sqlite3.Connection) -> list[str]:
    version = _sqlite_version(conn)
    if version >= LATEST:
        return []
    tables, indexes = _split_ddl("sqlite")
    conn.execute(_VERSION_DDL.format(**_TYPES["sqlite"]))
    for stmt in tables:
        conn.execute(stmt)
    applied = []
    for n, step in enumerate(STEPS[version:], start=version + 1):
        for stmt in step.statements("sqlite", _sqlite_columns(conn, step.table)):
            conn.execute(stmt)
        conn.execute(
            "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
            (n, step.description, time.time()),
        )
        applied.append(step.description)
    for stmt in indexes:
        conn.execute(stmt)
    return applied


# --- PostgreSQL ---------------------------------------------------------------------------------


async def _pg_columns(conn: Any, table: str) -> set[str]:
    rows = await conn.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = $1",
        table,
    )
    return {r[0] for r in rows}


async def _pg_version(conn: Any) -> int:
    if not await _pg_columns(conn, "schema_version"):
        return 0
    return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))


async def pg_status(conn: Any) -> SchemaStatus:
    version = await _pg_version(conn)
    return SchemaStatus(version, LATEST, pending(version))


async def pg_migrate(conn: Any) -> list[str]:
    """Bring the database up to date in one transaction, holding the advisory lock (released at
    commit): replicas starting together migrate once."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", PG_LOCK_KEY)
        version = await _pg_version(conn)
        if version >= LATEST:
            return []
        tables, indexes = _split_ddl("postgres")
        await conn.execute(_VERSION_DDL.format(**_TYPES["postgres"]))
        for stmt in tables:
            await conn.execute(stmt)
        applied = []
        for n, step in enumerate(STEPS[version:], start=version + 1):
            for stmt in step.statements("postgres", await _pg_columns(conn, step.table)):
                await conn.execute(stmt)
            await conn.execute(
                "INSERT INTO schema_version (version, description, applied_at) VALUES ($1, $2, $3)",
                n,
                step.description,
                time.time(),
            )
            applied.append(step.description)
        for stmt in indexes:
            await conn.execute(stmt)
        return applied
