"""The feedback table on every backend: request facts for the rater, upsert per (request, metric),
and filtered reads."""

from __future__ import annotations

import time

from sluice.store.base import Store
from sluice.store.feedback import FeedbackRow
from sluice.store.rows import request_to_row
from tests.store.test_backends import _record, store  # noqa: F401  (the fixture over both backends)


def _fb(rid: str, metric: str, value: float, ts: float) -> FeedbackRow:
    return FeedbackRow(f"{rid}:{metric}", ts, rid, "eng", "key_a", metric, value, None, '["t"]', "r", "m", "up",
                       "gpt-4o-mini")  # fmt: skip


async def test_facts_upsert_and_reads(store: Store) -> None:  # noqa: F811
    await store.insert_requests([request_to_row(_record(1, route="r"))])
    facts = await store.request_facts("req_1")
    assert facts is not None
    assert (facts.team, facts.route, facts.model, facts.provider, facts.target_model) == (
        "eng", "r", "m", "up", "gpt-4o-mini",
    )  # fmt: skip
    assert await store.request_facts("req_nope") is None
    now = time.time()
    await store.insert_feedback(_fb("req_1", "helpful", 1.0, now - 100))
    await store.insert_feedback(_fb("req_1", "helpful", 0.0, now))  # changed its mind: replaces
    await store.insert_feedback(_fb("req_1", "rating", 4.0, now))
    rows = await store.feedback_rows("helpful", None)
    assert [(r.metric, r.value, r.ts) for r in rows] == [("helpful", 0.0, now)]
    assert len(await store.feedback_rows(None, None)) == 2
    assert await store.feedback_rows(None, now + 1) == []
