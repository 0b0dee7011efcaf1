"""Rollups equal the raw log they cover, on both backends: every dimension, two at once, a period
that starts mid-hour, a replayed batch counted once; the audit trail is append-only."""

from __future__ import annotations

import random
import time

import pytest

from sluice.store import console_queries, insights
from sluice.store.audit import entry
from sluice.store.base import Store
from sluice.store.insights import DIMENSIONS
from sluice.store.keys import new_key
from sluice.store.records import RequestRecord
from sluice.store.rollups import latency_bin
from sluice.store.rows import request_to_row
from tests.store.test_backends import store  # noqa: F401  (the two-backend fixture)


def _records(n: int, now: float) -> list[RequestRecord]:
    rnd = random.Random(7)
    out = []
    for i in range(n):
        failed = rnd.random() < 0.2
        out.append(RequestRecord(
            id=f"req_{i:05d}", ts=now - rnd.uniform(0, 3 * 86400), endpoint="chat",
            key_id=rnd.choice(["key_a", "key_b", None]), team=rnd.choice(["eng", "billing", None]),
            user=rnd.choice(["u1", "u2", None]), tags=rnd.sample(["x", "y", "z"], rnd.randint(0, 2)),
            requested_model=rnd.choice(["m1", "m2"]), served_model=rnd.choice(["m1", "gpt", None]),
            provider=rnd.choice(["p1", "p2"]), route=rnd.choice(["r1", None]), status=503 if failed else 200,
            error_source="provider" if failed else None, error_kind="overloaded" if failed else None,
            prompt_tokens=rnd.randint(0, 100), completion_tokens=rnd.randint(0, 50),
            cost_nusd=None if rnd.random() < 0.1 else rnd.randint(0, 10**7), latency_ms=rnd.uniform(1, 3000),
            ttft_ms=rnd.uniform(1, 500) if rnd.random() < 0.5 else None, attempts=rnd.choice([1, 1, 2]),
        ))  # fmt: skip
    return out


def _expected(
    records: list[RequestRecord], dims: tuple[str, ...], since: float, names: dict[str, str]
) -> dict[tuple[str | None, ...], tuple[int, int, int]]:
    from sluice.store.rollups import model_label

    def values(r: RequestRecord, d: str) -> list[str | None]:
        single = {"team": r.team, "key": r.key_id, "user": r.user, "provider": r.provider, "route": r.route,
                  "model": model_label(r.requested_model, r.served_model),
                  "app": names.get(r.key_id or "", r.key_id),
                  "day": time.strftime("%Y-%m-%d", time.gmtime(r.ts)), "hour": str(int(r.ts // 3600 * 3600))}  # fmt: skip
        return list(r.tags) if d == "tag" else [single[d]]

    out: dict[tuple[str | None, ...], list[int]] = {}
    for r in records:
        if r.ts < since:
            continue
        groups: list[tuple[str | None, ...]] = [()]
        for d in dims:
            groups = [(*g, v) for g in groups for v in values(r, d)]
        for g in groups:
            acc = out.setdefault(g, [0, 0, 0])
            acc[0] += 1
            acc[1] += r.cost_nusd or 0
            acc[2] += r.prompt_tokens
    return {k: (v[0], v[1], v[2]) for k, v in out.items()}


async def test_spend_from_rollups_equals_the_raw_log(store: Store) -> None:  # noqa: F811
    now = time.time()
    records = _records(600, now)
    _, key = new_key(b"k" * 32, team="eng", name="app-a")
    await store.create_key(key)
    names = {key.id: "app-a"}
    for r in records:
        if r.key_id == "key_a":
            r.key_id = key.id  # a key with a name: its app
    rows = [request_to_row(r) for r in records]
    await store.insert_requests(rows[:300])
    await store.insert_requests(rows[200:])  # overlaps: a replayed spool is counted once
    since = now - 86400 - 1234.5  # mid-hour: that part-hour comes from the raw log
    two = [
        ("team", "model"),
        ("tag", "team"),
        ("app", "day"),
        ("user", "team"),
        ("user", "model"),
        ("tag", "user"),
    ]
    for start in (since, None):  # mid-hour a day ago; and everything (whole days from the daily rollups)
        for dims in [(), *[(d,) for d in DIMENSIONS], *two]:
            rows = await insights.spend(store, dims, start)
            got = {s.group: (s.requests, s.cost_nusd, s.prompt_tokens) for s in rows}
            assert got == _expected(records, dims, start or 0.0, names), (start, dims)
    scoped = await insights.spend(store, ("team",), None, teams=frozenset({"eng"}))
    assert [s.group for s in scoped] == [("eng",)]


async def test_reliability_and_requests_pages(store: Store) -> None:  # noqa: F811
    now = time.time()
    records = _records(300, now)
    await store.insert_requests([request_to_row(r) for r in records])
    data = await console_queries.reliability(store, now - 4 * 86400, None)
    ok = [r for r in records if r.status < 400]
    assert sum(x["count"] for x in data["latency"] if x["metric"] == "latency") == len(ok)
    assert sum(e["requests"] for e in data["errors"]) == len(records) - len(ok)
    assert sum(a["retried"] for a in data["attempts"]) == sum(1 for r in records if r.attempts > 1)
    assert data["step"] == "day"
    day = await console_queries.reliability(store, now - 86400, None)  # whole hours from a day ago
    start = (now - 86400) // 3600 * 3600
    assert day["step"] == "hour"
    assert sum(x["count"] for x in day["latency"] if x["metric"] == "latency") == sum(
        1 for r in ok if r.ts >= start
    )
    assert sum(x["count"] for x in day["latency"] if x["metric"] == "ttft") == sum(
        1 for r in ok if r.ts >= start and r.ttft_ms is not None
    )
    f = console_queries.parse_filter({"limit": "50", "team": "eng", "tag": "x"}, None, None)
    seen: list[str] = []
    while True:
        page = await console_queries.list_requests(store, f)
        seen.extend(r["id"] for r in page["data"])
        if page["next_before"] is None:
            break
        f = console_queries.parse_filter(
            {"limit": "50", "team": "eng", "tag": "x", "before": page["next_before"]}, None, None
        )
    expected = sorted(
        (r for r in records if r.team == "eng" and "x" in r.tags), key=lambda r: (r.ts, r.id), reverse=True
    )
    assert seen == [r.id for r in expected]
    assert await console_queries.get_request(store, expected[0].id, frozenset({"billing"})) is None
    assert (await console_queries.get_request(store, expected[0].id, None))["id"] == expected[0].id  # type: ignore[index]


async def test_audit_is_append_only(store: Store) -> None:  # noqa: F811
    await store.append_audit(entry("admin", "api", "key.created", "key_1", "eng", None, {"rpm": 1}))
    rows = await store.fetch("SELECT actor, action, team FROM audit")
    assert rows == [("admin", "key.created", "eng")]
    for sql in ("UPDATE audit SET actor = 'x'", "DELETE FROM audit"):
        with pytest.raises(Exception, match="append-only"):
            await store.fetch(sql)


def test_latency_bins_are_within_ten_percent() -> None:
    from sluice.store.rollups import bin_value

    for ms in (1.5, 12.0, 250.0, 4000.0, 60000.0):
        assert abs(bin_value(latency_bin(ms)) - ms) / ms < 0.1
