"""Schema migrations: a database made by the first commit that shipped a schema (fixtures/) is
upgraded without losing a row, to exactly the schema a new database gets; several processes
migrating together migrate once."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sluice.store import migrations
from sluice.store.base import create_store
from sluice.store.records import RequestRecord
from sluice.store.rows import request_to_row
from tests.conftest import require_service

FIXTURES = Path(__file__).parent / "fixtures"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _old_sqlite(path: Path, commit: str = "2b76b23") -> None:
    conn = sqlite3.connect(path)
    conn.executescript((FIXTURES / f"schema_{commit}.sqlite.sql").read_text())
    conn.close()


def _sqlite_schema(path: Path) -> dict[str, list[tuple[str, str, int]]]:
    conn = sqlite3.connect(path)
    try:
        tables = [
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        ]
        return {
            t: sorted((r[1], r[2], r[3]) for r in conn.execute(f"PRAGMA table_info({t})")) for t in tables
        }
    finally:
        conn.close()


def _indexes(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    finally:
        conn.close()


def _record(i: int) -> RequestRecord:
    return RequestRecord(
        id=f"req_new_{i}", ts=time.time(), endpoint="chat", key_id="key_old", team="eng", user="alice",
        served_model="gpt-4o-mini", provider="openai", prompt_tokens=1, completion_tokens=1, cost_usd=0.5,
        policy_version="abc123",
    )  # fmt: skip


async def test_sqlite_upgrade_from_the_first_schema_keeps_every_row(tmp_path: Path) -> None:
    old, new = tmp_path / "old.db", tmp_path / "new.db"
    _old_sqlite(old)
    store = create_store(f"sqlite:///{old}")
    await store.open(migrate=False)
    status = await store.schema_status()
    assert status.version == 0 and not status.current
    assert "add requests.route_reason" in status.pending and "add requests.policy_version" in status.pending
    applied = await store.migrate()
    assert applied == list(status.pending)
    assert await store.migrate() == []  # once only
    assert (await store.schema_status()).current
    assert await store.count_requests() == 5
    assert [k.id for k in await store.list_keys()] == ["key_old"]
    await store.insert_requests([request_to_row(_record(1))])
    spend = {r.group: r for r in await store.spend("team", None)}
    assert spend["eng"].requests == 6 and spend["eng"].prompt_tokens == 10 + 11 + 12 + 13 + 14 + 1
    await store.close()

    fresh = create_store(f"sqlite:///{new}")
    await fresh.open()
    assert (await fresh.schema_status()).version == migrations.LATEST
    await fresh.close()
    # Column by column (name, type, not-null): a column added to ddl() without its step fails here.
    assert _sqlite_schema(old) == _sqlite_schema(new)
    assert _indexes(old) == _indexes(new)


@pytest.mark.parametrize("commit", ["2b76b23", "0a834bb"])
async def test_every_shipped_schema_upgrades_to_the_new_one(tmp_path: Path, commit: str) -> None:
    old, new = tmp_path / "old.db", tmp_path / "new.db"
    _old_sqlite(old, commit)
    before = sqlite3.connect(old).execute("SELECT count(*) FROM requests").fetchone()[0]
    for path in (old, new):
        s = create_store(f"sqlite:///{path}")
        await s.open()
        await s.close()
    assert sqlite3.connect(old).execute("SELECT count(*) FROM requests").fetchone()[0] == before > 0
    assert _sqlite_schema(old) == _sqlite_schema(new)


async def test_sqlite_open_migrates_and_old_rows_read_back(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    _old_sqlite(old)
    store = create_store(f"sqlite:///{old}")
    await store.open()  # what `sluice serve` does
    try:
        assert (await store.schema_status()).current
        rows = sqlite3.connect(old).execute(
            "SELECT id, policy_version, route_reason FROM requests ORDER BY id"
        )
        assert [r[0] for r in rows][:5] == [f"req_old_{i}" for i in range(5)]
    finally:
        await store.close()


def test_sqlite_processes_migrating_together_migrate_once(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    _old_sqlite(old)
    code = (
        "import asyncio, sys\n"
        "from sluice.store.base import create_store\n"
        "async def main():\n"
        "    s = create_store(sys.argv[1]); await s.open(); await s.close()\n"
        "asyncio.run(main())\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, f"sqlite:///{old}"]) for _ in range(4)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    versions = sqlite3.connect(old).execute("SELECT version FROM schema_version ORDER BY version").fetchall()
    assert [v[0] for v in versions] == list(range(1, migrations.LATEST + 1))


@pytest.fixture
async def pg_db() -> AsyncIterator[str]:
    require_service("postgresql", 5432)
    import asyncpg

    name = "sluice_mig_" + secrets.token_hex(4)
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def _pg_schema(url: str) -> dict[str, list[tuple[str, str, str]]]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name NOT LIKE 'requests\\_p%' "
            "ORDER BY table_name, column_name"
        )
        out: dict[str, list[tuple[str, str, str]]] = {}
        for r in rows:
            out.setdefault(r[0], []).append((r[1], r[2], r[3]))
        idx = await conn.fetch(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' "
            "AND tablename NOT LIKE 'requests\\_p%' ORDER BY 1"
        )
        out["(indexes)"] = [(r[0], "", "") for r in idx]
        return out
    finally:
        await conn.close()


@pytest.mark.parametrize("commit", ["2b76b23", "0a834bb"])
async def test_postgres_upgrade_from_a_shipped_schema_keeps_every_row(pg_db: str, commit: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(pg_db)
    await conn.execute((FIXTURES / f"schema_{commit}.postgres.sql").read_text())
    rows_before = int(await conn.fetchval("SELECT count(*) FROM requests"))
    await conn.close()
    store = create_store(pg_db)
    await store.open(migrate=False)
    try:
        assert (await store.schema_status()).version == 0
        # Replicas starting together: all migrate, under the advisory lock, once.
        others = [create_store(pg_db) for _ in range(3)]
        await asyncio.gather(*(o.open() for o in others), store.migrate())
        for o in others:
            await o.close()
        assert (await store.schema_status()).current
        assert await store.count_requests() == rows_before
        await store.insert_requests([request_to_row(_record(1))])
        assert await store.count_requests() == rows_before + 1
    finally:
        await store.close()
    conn = await asyncpg.connect(pg_db)
    try:
        versions = [r[0] for r in await conn.fetch("SELECT version FROM schema_version ORDER BY 1")]
    finally:
        await conn.close()
    assert versions == list(range(1, migrations.LATEST + 1))
    migrated = await _pg_schema(pg_db)

    import asyncpg as apg

    admin = await apg.connect(PG_ADMIN)
    fresh_name = "sluice_mig_" + secrets.token_hex(4)
    await admin.execute(f'CREATE DATABASE "{fresh_name}"')
    try:
        fresh_url = f"postgresql://postgres@127.0.0.1:5432/{fresh_name}"
        fresh = create_store(fresh_url)
        await fresh.open()
        await fresh.close()
        assert migrated == await _pg_schema(fresh_url)
    finally:
        await admin.execute(f'DROP DATABASE "{fresh_name}" WITH (FORCE)')
        await admin.close()


def test_cli_db_status_and_migrate(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    _old_sqlite(old)
    policy = tmp_path / "sluice.yaml"
    policy.write_text(f"store: {{url: 'sqlite:///{old}'}}\n")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sluice.cli", "db", *args, "--config", str(policy)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    status = cli("status")
    assert status.returncode == 1, status.stderr
    assert f"schema version 0 of {migrations.LATEST}" in status.stdout
    assert "pending: add requests.policy_version" in status.stdout
    migrate = cli("migrate")
    assert migrate.returncode == 0, migrate.stderr
    assert "applied: add requests.route_reason" in migrate.stdout
    again = cli("status", "--json")
    assert again.returncode == 0 and '"current": true' in again.stdout
