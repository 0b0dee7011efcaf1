"""Latency tails from the request log, on both backends, against a brute-force reference."""

from __future__ import annotations

import math
import random
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sluice.store.base import Store, create_store
from sluice.store.records import RequestRecord
from sluice.store.rows import request_to_row
from sluice.store.stats import QUANTILES, nearest_rank


def test_nearest_rank() -> None:
    values = [float(v) for v in range(1, 1001)]
    assert nearest_rank(values, 0.5) == 500
    assert nearest_rank(values, 0.99) == 990
    assert nearest_rank(values, 0.999) == 999
    assert nearest_rank([7.0], 0.999) == 7
    assert nearest_rank([], 0.5) is None


def _records(now: float) -> list[RequestRecord]:
    rnd = random.Random(7)
    out = []
    for i in range(400):
        model = "a" if i % 2 else "b"
        status, source = 200, None
        if i % 10 == 0:
            status, source = 502, "provider"
        elif i % 15 == 0:
            status, source = 401, "gateway"
        elif i % 17 == 0:
            status, source = 429, "gateway"
        out.append(RequestRecord(
            id=f"r{i}", ts=now - 10, endpoint="chat", key_id="k", team="eng", user=None, requested_model=model,
            status=status, error_source=source, latency_ms=rnd.expovariate(1 / 300),
            ttft_ms=rnd.uniform(10, 90) if i % 3 == 0 else None,
        ))  # fmt: skip
    out.append(RequestRecord(id="old", ts=now - 10_000, endpoint="chat", key_id="k", team="eng", user=None,
                             requested_model="a", latency_ms=1e9))  # fmt: skip
    out.append(RequestRecord(id="shadow", ts=now - 10, endpoint="chat", key_id="k", team="eng", user=None,
                             requested_model="a", latency_ms=1e9, shadow_of="r1"))  # fmt: skip
    return out


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        s = create_store(f"sqlite:///{tmp_path}/s.db")
        await s.open()
        yield s
        await s.close()
        return
    import asyncpg

    url = request.getfixturevalue("postgres_url")
    name = f"sluice_obs_stats_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(url)
    await admin.execute(f"CREATE DATABASE {name}")
    s = create_store(url.rsplit("/", 1)[0] + "/" + name)
    try:
        await s.open()
        yield s
        await s.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


async def test_stats_match_a_brute_force_reference(store: Store) -> None:
    now = time.time()
    records = _records(now)
    await store.insert_requests([request_to_row(r) for r in records])
    rows = {r.group: r for r in await store.latency_stats("model", now - 3600)}
    assert set(rows) == {"a", "b"}
    for model, row in rows.items():
        mine = [r for r in records if r.requested_model == model and r.id not in ("old", "shadow")]
        assert row.requests == len(mine)
        assert row.errors_provider == sum(r.error_source == "provider" for r in mine)
        assert row.errors_client == sum(r.status == 401 for r in mine)
        assert row.errors_gateway == sum(r.status == 429 for r in mine)
        lat = sorted(r.latency_ms for r in mine)
        ttft = sorted(r.ttft_ms for r in mine if r.ttft_ms is not None)
        for q in QUANTILES:
            assert math.isclose(row.latency_ms[q] or 0, lat[math.ceil(q * len(lat)) - 1])
            assert math.isclose(row.ttft_ms[q] or 0, ttft[math.ceil(q * len(ttft)) - 1])
        d = row.to_dict("model")
        assert d["latency_ms"]["p999"] == round(lat[-1], 3) or len(lat) >= 1000  # type: ignore[index]
