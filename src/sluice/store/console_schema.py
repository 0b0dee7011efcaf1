"""The console's tables: the append-only audit trail and the rollups. Created if missing by every
migration run (inside its transaction and lock), since they are not versioned steps: they only
ever gain tables, each ``CREATE ... IF NOT EXISTS``."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from sluice.store import rollups
from sluice.store.audit import audit_ddl


def sqlite_console_tables(conn: sqlite3.Connection) -> None:
    for stmt in audit_ddl("sqlite") + rollups.rollup_ddl("REAL", "INTEGER"):
        conn.execute(stmt)
    empty = conn.execute("SELECT NOT EXISTS (SELECT 1 FROM requests)").fetchone()[0]
    conn.execute(
        "INSERT OR IGNORE INTO rollup_meta (name, value) VALUES ('complete_from', ?)",
        (rollups.complete_from(bool(empty), time.time()),),
    )


async def pg_console_tables(conn: Any) -> None:
    for stmt in audit_ddl("postgres") + rollups.rollup_ddl("DOUBLE PRECISION", "BIGINT"):
        await conn.execute(stmt)
    empty = await conn.fetchval("SELECT NOT EXISTS (SELECT 1 FROM requests)")
    await conn.execute(
        "INSERT INTO rollup_meta (name, value) VALUES ('complete_from', $1) ON CONFLICT DO NOTHING",
        rollups.complete_from(bool(empty), time.time()),
    )
