"""Scheduled spend reports: the period just ended, exact sums, sent once across replicas."""

from __future__ import annotations

import datetime
import time
from decimal import Decimal
from pathlib import Path

import pytest

from sluice.store.records import RequestRecord
from sluice.store.reports import ReportScheduler, TeamModelSpend, build_report, last_period, next_boundary
from sluice.store.rows import request_to_row
from sluice.store.sqlite import SQLiteStore

UTC = datetime.UTC


def _ts(*args: int) -> float:
    return datetime.datetime(*args, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("name", "now", "start", "end", "previous"),
    [
        ("daily", _ts(2026, 3, 4, 10), (2026, 3, 3), (2026, 3, 4), (2026, 3, 2)),
        ("daily", _ts(2026, 3, 4), (2026, 3, 3), (2026, 3, 4), (2026, 3, 2)),  # at the boundary
        ("weekly", _ts(2026, 3, 4, 10), (2026, 2, 23), (2026, 3, 2), (2026, 2, 16)),  # Wed → last Mon..Mon
        ("monthly", _ts(2026, 3, 4), (2026, 2, 1), (2026, 3, 1), (2026, 1, 1)),
        ("monthly", _ts(2026, 1, 15), (2025, 12, 1), (2026, 1, 1), (2025, 11, 1)),
    ],
)
def test_last_period(
    name: str, now: float, start: tuple[int, ...], end: tuple[int, ...], previous: tuple[int, ...]
) -> None:
    p = last_period(name, now)
    assert (p.start, p.end, p.previous_start) == (
        datetime.datetime(*start, tzinfo=UTC), datetime.datetime(*end, tzinfo=UTC),
        datetime.datetime(*previous, tzinfo=UTC),
    )  # fmt: skip
    assert next_boundary(name, now) > now >= p.end.timestamp()


def test_report_sums_exactly_and_compares_with_the_period_before() -> None:
    period = last_period("weekly", _ts(2026, 3, 4))
    now = [
        TeamModelSpend("eng", "gpt-4o-mini", 10, Decimal("0.000000001"), 0),
        TeamModelSpend("eng", "claude", 2, Decimal("1.5"), 1),
        TeamModelSpend("ops", "gpt-4o-mini", 1, Decimal("0.25"), 0),
    ]
    before = [TeamModelSpend("eng", "claude", 3, Decimal("1"), 0)]
    report = build_report(period, now, before)
    assert report["total_usd"] == "1.750000001"
    eng, ops = report["teams"]  # type: ignore[misc]
    assert eng["spent_usd"] == "1.500000001" and eng["change_pct"] == 50.0 and eng["unpriced_requests"] == 1
    assert [m["model"] for m in eng["top_models"]] == ["claude", "gpt-4o-mini"]
    assert ops["change_pct"] is None and ops["previous_usd"] == "0"


async def test_scheduler_sends_each_period_once_across_replicas(tmp_path: Path) -> None:
    db = f"{tmp_path}/r.db"
    first, second = SQLiteStore(db), SQLiteStore(db)
    await first.open()
    await second.open()
    yesterday = time.time() - 86400
    day = datetime.datetime.fromtimestamp(yesterday, UTC).date().isoformat()
    record = RequestRecord(id="r1", ts=yesterday, endpoint="chat", key_id="k", team="eng", user=None,
                           served_model="m", prompt_tokens=5, cost_nusd=2_500_000)  # fmt: skip
    await first.insert_requests([request_to_row(record)])
    sent: list[bytes] = []

    async def post(body: bytes) -> int:
        sent.append(body)
        return 204

    async def refuse(body: bytes) -> int:
        raise RuntimeError("webhook down")

    failing = ReportScheduler(first, refuse, ["daily"], grace_s=0)
    with pytest.raises(RuntimeError):
        await failing.send_due("daily")  # a failed send gives its claim back ...
    assert (
        await ReportScheduler(first, post, ["daily"], grace_s=0).send_due("daily") is True
    )  # ... so it is sent
    assert await ReportScheduler(second, post, ["daily"], grace_s=0).send_due("daily") is False  # once
    assert (
        len(sent) == 1 and f'"from":"{day}' in sent[0].decode() and '"spent_usd":"0.0025"' in sent[0].decode()
    )
    await first.close()
    await second.close()
