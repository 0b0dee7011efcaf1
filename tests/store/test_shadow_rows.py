"""Routing's columns (route_reason, shadow_of, comparison) round-trip on every backend."""

from __future__ import annotations

import time

from sluice.store.base import Store
from sluice.store.rows import request_to_row
from tests.store.test_backends import _record, store

__all__ = ["store"]


async def test_shadow_rows_and_route_reason(store: Store) -> None:
    now = time.time()
    rows = [
        _record(1, ts=now - 10, route="eval", route_reason="route 'eval' matched"),
        _record(
            2, ts=now - 5, route="eval", shadow_of="req_1", comparison='{"similarity": 0.5}', cost_usd=0.002
        ),
        _record(3, ts=now - 100_000, route="eval", shadow_of="req_0", comparison="{}"),
    ]
    await store.insert_requests([request_to_row(r) for r in rows])
    shadows = await store.shadow_rows(now - 3600)
    assert [(s.id, s.route, s.shadow_of, s.status, s.cost_usd, s.comparison) for s in shadows] == [
        ("req_2", "eval", "req_1", 200, 0.002, '{"similarity": 0.5}')
    ]
    assert [s.id for s in await store.shadow_rows(None)] == ["req_3", "req_2"]
