"""Retention with a moved clock: PostgreSQL makes day partitions ahead and drops whole old ones;
SQLite deletes old rows in small batches."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sluice.store import sqlite as sqlite_mod
from sluice.store.base import Store, create_store
from sluice.store.records import RequestRecord
from sluice.store.retention import Upkeep
from sluice.store.rows import request_to_row
from tests.conftest import require_service

DAY = 86400.0
START = 1_798_761_600.0  # 2027-01-01T00:00:00Z


def _row(i: int, ts: float) -> tuple[object, ...]:
    return request_to_row(
        RequestRecord(id=f"r{i}", ts=ts, endpoint="chat", key_id=None, team="eng", user=None)
    )


async def test_sqlite_deletes_old_rows_in_small_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_mod, "PURGE_BATCH", 100)
    monkeypatch.setattr(sqlite_mod, "PURGE_PAUSE_S", 0.0)
    store = create_store(f"sqlite:///{tmp_path}/r.db")
    await store.open()
    try:
        await store.insert_requests([_row(i, START + i) for i in range(450)])  # day 0
        await store.insert_requests([_row(1000 + i, START + 40 * DAY + i) for i in range(7)])  # day 40
        upkeep = Upkeep(store, 30, clock=lambda: START + 40 * DAY + 3600)
        assert await upkeep.run_once() == 450
        assert await store.count_requests() == 7
        assert await Upkeep(store, None, clock=lambda: START + 400 * DAY).run_once() == 0  # no retention
        assert await store.count_requests() == 7
    finally:
        await store.close()


@pytest.fixture
async def pg_store() -> AsyncIterator[tuple[Store, str]]:
    require_service("postgresql", 5432)
    import asyncpg

    name = "sluice_ret_" + secrets.token_hex(4)
    admin = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    store = create_store(url)
    await store.open()
    try:
        yield store, url
    finally:
        await store.close()
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def _partitions(url: str) -> list[str]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'requests' ORDER BY 1"
        )
        return [r[0] for r in rows]
    finally:
        await conn.close()


async def _count(url: str, table: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval(f'SELECT count(*) FROM "{table}"'))
    finally:
        await conn.close()


async def test_postgres_partitions_by_day_and_drops_whole_days(pg_store: tuple[Store, str]) -> None:
    store, url = pg_store
    clock = [START]
    upkeep = Upkeep(store, 30, clock=lambda: clock[0])
    await upkeep.run_once()
    parts = await _partitions(url)
    assert {"requests_p20270101", "requests_p20270102", "requests_p20270103", "requests_default"} <= set(
        parts
    )
    await store.insert_requests([_row(i, START + i * 60) for i in range(20)])  # 2027-01-01
    await store.insert_requests([_row(100, START - 400 * DAY)])  # no partition: the default one
    clock[0] = START + 40 * DAY + 7200  # forty days later
    await upkeep.run_once()
    await store.insert_requests([_row(200 + i, clock[0] + i) for i in range(5)])
    parts = await _partitions(url)
    assert "requests_p20270210" in parts and "requests_p20270212" in parts  # today and two ahead
    assert "requests_p20270101" not in parts and "requests_p20270103" not in parts  # dropped whole
    assert await store.count_requests() == 5  # the day-0 rows went with their partitions; the stray one too
    assert upkeep.purged >= 3
    # a row for a day with no partition yet (the upkeep did not run) waits in the default
    # partition, and moves into its day's partition when that is made
    later = clock[0] + 10 * DAY
    await store.insert_requests([_row(300, later)])
    clock[0] = later
    await upkeep.run_once()
    assert "requests_p20270220" in await _partitions(url)
    assert await _count(url, "requests_p20270220") == 1 and await _count(url, "requests_default") == 0
    assert await store.count_requests() == 6
    await store.insert_requests([_row(300, later)])  # and a repeat of it is still ignored
    assert await store.count_requests() == 6
    # a replayed (identical) row is still ignored on the partitioned table
    await store.insert_requests([_row(200, START + 40 * DAY + 7200)])
    assert await store.count_requests() == 6
