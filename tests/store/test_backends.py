"""One suite for every store backend: SQLite (default) and PostgreSQL (real server on loopback)."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from decimal import Decimal
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
        prompt_tokens=10, completion_tokens=5, cost_usd=0.001, cost_nusd=1_000_001, latency_ms=3.0,
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
    await store.insert_requests(
        [rows[3], request_to_row(_record(11, team="ops", status=502, cost_usd=None, cost_nusd=None))]
    )
    assert await store.count_requests() == 11
    rows = {r.group: r for r in await store.spend("team", None)}
    assert rows["eng"].requests == 10 and rows["eng"].prompt_tokens == 100
    assert rows["eng"].cost_usd == Decimal("0.01000001"), "the ledger sums exactly"
    assert rows["eng"].unpriced == 0
    # An error that billed tokens of an unpriced model is reported as unpriced, never as $0 spent.
    assert rows["ops"].errors == 1 and rows["ops"].cost_usd == 0 and rows["ops"].unpriced == 1
    day = await store.spend("day", time.time() - 3600)
    assert len(day) == 1 and day[0].requests == 11
    assert await store.spend("team", time.time() + 3600) == []
    for group in ("key", "user", "model", "provider"):
        assert await store.spend(group, None)  # type: ignore[arg-type]


async def test_ping(store: Store) -> None:
    await store.ping()


async def test_postgres_programming_errors_are_not_outages(tmp_path: Path) -> None:
    """Bad SQL or a value out of range is raised as itself; only an outage is StoreUnavailable."""
    require_service("postgresql", 5432)
    import asyncpg

    from sluice.store.base import StoreUnavailable
    from sluice.store.postgres import PostgresStore

    name = "sluice_test_" + secrets.token_hex(4)
    admin = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        s = PostgresStore(f"postgresql://postgres@127.0.0.1:5432/{name}")
        await s.open()
        try:
            with pytest.raises(asyncpg.PostgresSyntaxError):
                await s._call("fetch", "SELEC 1")
            with pytest.raises(asyncpg.UndefinedTableError):
                await s._call("fetch", "SELECT * FROM no_such_table")
            _, record = new_key(b"k", team="eng")
            await s.create_key(record)
            with pytest.raises(asyncpg.UniqueViolationError):
                await s.create_key(record)
            await s.ping()  # still healthy
        finally:
            await s.close()
        with pytest.raises(StoreUnavailable):  # closed: an outage as far as callers can tell
            await s.ping()
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def test_postgres_unreachable_is_unavailable() -> None:
    from sluice.store.base import StoreUnavailable
    from sluice.store.postgres import PostgresStore, unavailable

    with pytest.raises(StoreUnavailable):
        await PostgresStore("postgresql://postgres@127.0.0.1:9/nowhere").open()
    assert unavailable(ConnectionRefusedError()) and unavailable(TimeoutError())
    assert not unavailable(ValueError("x")) and not unavailable(KeyError("x"))


async def test_spend_by_model_names_the_model_asked_for_and_the_one_that_answered(store: Store) -> None:
    await store.insert_requests(
        [
            request_to_row(_record(1, requested_model="gpt-4o-mini", served_model="gpt-4o-mini")),
            request_to_row(_record(2, requested_model="fast", served_model="gpt-4o-mini")),
            request_to_row(_record(3, requested_model="fast", served_model=None, status=429, cost_usd=None)),
        ]
    )
    rows = {r.group: r.requests for r in await store.spend("model", None)}
    assert rows == {"gpt-4o-mini": 1, "fast -> gpt-4o-mini": 1, "fast": 1}


async def test_spend_by_team_model_and_report_claims(store: Store) -> None:
    now = time.time()
    rows = [_record(i, ts=now - 10, cost_nusd=1_000) for i in range(3)] + [
        _record(5, ts=now - 10, team="ops", served_model="claude", cost_nusd=None),
        _record(6, ts=now - 100_000, cost_nusd=7),  # outside the range
        _record(7, ts=now - 10, shadow_of="req_1", cost_nusd=9),  # a shadow call: not the team's spend
    ]
    await store.insert_requests([request_to_row(r) for r in rows])
    got = {(r.team, r.model): r for r in await store.spend_by_team_model(now - 3600, now)}
    assert set(got) == {("eng", "gpt-4o-mini"), ("ops", "claude")}
    assert (
        got["eng", "gpt-4o-mini"].cost_usd == Decimal("0.000003") and got["eng", "gpt-4o-mini"].requests == 3
    )
    assert got["ops", "claude"].unpriced == 1
    key = f"daily:{secrets.token_hex(4)}"
    assert await store.claim_report(key, now) is True
    assert await store.claim_report(key, now) is False
    await store.unclaim_report(key)
    assert await store.claim_report(key, now) is True
