"""Stored responses on both backends: put / get / delete, team scope, retention and purge, and
writes that never wait for the database."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sluice.store.base import StoreUnavailable
from sluice.store.responses import ResponseStore, StoredResponse
from sluice.store.responses_sql import ResponseTable, open_table
from tests.conftest import require_service

DAY = 86400.0


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "postgres"])
async def table(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ResponseTable]:
    if request.param == "sqlite":
        yield open_table(f"sqlite:///{tmp_path}/t.db")
        return
    require_service("postgresql", 5432)
    import asyncpg

    name = "sluice_test_resp_" + secrets.token_hex(4)
    admin = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield open_table(f"postgresql://postgres@127.0.0.1:5432/{name}")
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


def row(rid: str, team: str = "eng", at: float | None = None) -> StoredResponse:
    return StoredResponse(
        rid, team, at if at is not None else time.time(), b'{"id":"%s"}' % rid.encode(), b"[]"
    )


async def test_put_get_delete_scoped_to_the_team(table: ResponseTable) -> None:
    store = ResponseStore(table, retention_s=DAY, flush_interval_s=0.01)
    await store.start()
    try:
        store.put(row("resp_1"))
        assert (await store.get("resp_1", "eng")) is not None, "readable before it is written"
        await store._flush()
        assert not store._pending
        got = await store.get("resp_1", "eng")
        assert got is not None and got.body == b'{"id":"resp_1"}' and got.conversation == b"[]"
        assert await store.get("resp_1", "ops") is None
        assert not await store.delete("resp_1", "ops")
        assert await store.delete("resp_1", "eng")
        assert await store.get("resp_1", "eng") is None
        assert not await store.delete("resp_1", "eng")
        store.put(row("resp_2"))  # deleted while still pending
        assert await store.delete("resp_2", "eng")
        await store._flush()
        assert await store.get("resp_2", "eng") is None
    finally:
        await store.close()


async def test_retention_hides_and_purges_old_rows(table: ResponseTable) -> None:
    clock = Clock()
    store = ResponseStore(table, retention_s=7 * DAY, flush_interval_s=0.01, clock=clock)
    await store.start()
    try:
        store.put(row("resp_old", at=clock.now - 8 * DAY))
        store.put(row("resp_new", at=clock.now - 6 * DAY))
        assert await store.get("resp_old", "eng") is None, "expired even before it is purged"
        await store._flush()
        assert await store.get("resp_old", "eng") is None
        await store.purge()  # (the background task purges once at start, too)
        assert store.purged == 1 and await table.get("resp_old", "eng", 0.0) is None
        assert await store.get("resp_new", "eng") is not None
        clock.now += 2 * DAY
        assert await store.get("resp_new", "eng") is None
        assert await store.purge() == 1 and store.purged == 2
    finally:
        await store.close()


async def test_close_writes_what_is_pending(table: ResponseTable) -> None:
    store = ResponseStore(table, retention_s=DAY, flush_interval_s=60)
    await store.start()
    store.put(row("resp_late"))
    await store.close()
    again = ResponseStore(open_table_like(table), retention_s=DAY)
    await again.start()
    try:
        assert await again.get("resp_late", "eng") is not None
    finally:
        await again.close()


def open_table_like(table: ResponseTable) -> ResponseTable:
    url = getattr(table, "url", None)
    return open_table(url if url is not None else "sqlite:///" + table.path)  # type: ignore[attr-defined]


class DownTable:
    """A table whose database is unreachable."""

    def __init__(self) -> None:
        self.rows: list[StoredResponse] = []

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def put_many(self, rows: object) -> None:
        raise StoreUnavailable("down")

    async def get(self, response_id: str, team: str, since: float) -> StoredResponse | None:
        raise StoreUnavailable("down")

    async def delete(self, response_id: str, team: str) -> bool:
        raise StoreUnavailable("down")

    async def purge(self, before: float) -> int:
        raise StoreUnavailable("down")


async def test_an_outage_keeps_rows_pending_within_a_byte_cap() -> None:
    store = ResponseStore(DownTable(), retention_s=DAY, flush_interval_s=0.01, max_pending_bytes=100)
    await store.start()
    try:
        for i in range(10):
            store.put(row(f"resp_{i}"))  # 17 bytes each: the oldest go past 100
        with pytest.raises(StoreUnavailable):
            await store._flush()
        assert store.dropped == 5 and sorted(store._pending) == [f"resp_{i}" for i in range(5, 10)]
        assert await store.get("resp_9", "eng") is not None, "still served from memory"
        with pytest.raises(StoreUnavailable):
            await store.get("resp_0", "eng")
    finally:
        await store.close()


async def test_the_background_task_writes_and_purges_on_its_own(table: ResponseTable) -> None:
    clock = Clock()
    await table.open()
    await table.put_many([row("resp_stale", at=clock.now - 2 * DAY)])
    await table.close()
    store = ResponseStore(open_table_like(table), retention_s=DAY, flush_interval_s=0.01, clock=clock)
    await store.start()
    try:
        store.put(row("resp_bg"))
        for _ in range(200):
            if not store._pending and store.purged == 1:
                break
            await asyncio.sleep(0.01)
        assert store.purged == 1, "purged at start"
        assert not store._pending and await store._table.get("resp_bg", "eng", 0.0) is not None
    finally:
        await store.close()
