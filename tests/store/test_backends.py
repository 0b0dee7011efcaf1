"""One suite for every store backend: SQLite (default) and PostgreSQL (real server on loopback)."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sluice.store.base import Store, create_store
from sluice.store.keys import new_key
from sluice.store.records import RequestRecord
from sluice.store.rows import request_to_row
from tests.conftest import require_service


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        s = create_store(f"sqlite:///{tmp_path}/t.db")
        await s.open()
        yield s
        await s.close()
        return
    require_service("postgresql", 5432)
    import asyncpg

    name = "sluice_test_" + secrets.token_hex(4)
    admin = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        s = create_store(f"postgresql://postgres@127.0.0.1:5432/{name}")
        await s.open()
        yield s
        await s.close()
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


def _record(i: int, **kw: object) -> RequestRecord:
    base: dict[str, object] = dict(
        id=f"req_{i}", ts=time.time(), endpoint="chat", key_id="key_a", team="eng", user="u1",
        tags=["t"], requested_model="m", served_model="gpt-4o-mini", provider="up",
        prompt_tokens=10, completion_tokens=5, cost_usd=0.001, latency_ms=3.0,
    )  # fmt: skip
    base.update(kw)
    return RequestRecord(**base)  # type: ignore[arg-type]


async def test_keys_roundtrip_and_revoke(store: Store) -> None:
    secret, rec = new_key(b"k" * 32, team="eng", user="alice", models=("a", "b"))
    await store.create_key(rec)
    v1 = await store.keys_version()
    keys = await store.list_keys(include_revoked=False)
    assert [(k.id, k.hash, k.team, k.user, k.models) for k in keys] == [
        (rec.id, rec.hash, "eng", "alice", ("a", "b"))
    ]
    assert secret not in repr(keys)
    assert await store.revoke_key(rec.id, time.time()) is True
    assert await store.revoke_key(rec.id, time.time()) is False
    assert await store.list_keys(include_revoked=False) == []
    assert (await store.list_keys())[0].revoked_at is not None
    assert await store.keys_version() != v1


async def test_requests_batch_idempotent_and_spend(store: Store) -> None:
    rows = [request_to_row(_record(i)) for i in range(10)]
    await store.insert_requests(rows)
    # A replay (spool, journal) repeats a row exactly: ignored.
    await store.insert_requests([rows[3], request_to_row(_record(11, team="ops", status=502, cost_usd=None))])
    assert await store.count_requests() == 11
    rows = {r.group: r for r in await store.spend("team", None)}
    assert rows["eng"].requests == 10 and rows["eng"].prompt_tokens == 100
    assert rows["eng"].cost_usd == pytest.approx(0.01)
    assert rows["ops"].errors == 1 and rows["ops"].cost_usd == 0
    day = await store.spend("day", time.time() - 3600)
    assert len(day) == 1 and day[0].requests == 11
    assert await store.spend("team", time.time() + 3600) == []
    for group in ("key", "user", "model", "provider"):
        assert await store.spend(group, None)  # type: ignore[arg-type]


async def test_ping(store: Store) -> None:
    await store.ping()
