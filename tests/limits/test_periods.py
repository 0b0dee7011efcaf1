from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from sluice.limits.periods import period_window

UTC = ZoneInfo("UTC")
PARIS = ZoneInfo("Europe/Paris")


def ts(s: str, tz: ZoneInfo = UTC) -> float:
    return datetime.fromisoformat(s).replace(tzinfo=tz).timestamp()


@pytest.mark.parametrize(
    ("period", "at", "start", "end"),
    [
        ("daily", "2026-03-15T23:59:59", "2026-03-15", "2026-03-16"),
        ("weekly", "2026-03-15T12:00:00", "2026-03-09", "2026-03-16"),  # a Sunday; weeks start Monday
        ("weekly", "2026-03-16T00:00:00", "2026-03-16", "2026-03-23"),
        ("monthly", "2026-12-31T23:00:00", "2026-12-01", "2027-01-01"),
        ("monthly", "2026-02-01T00:00:00", "2026-02-01", "2026-03-01"),
    ],
)
def test_calendar_aligned(period, at, start, end):
    w = period_window(ts(at), period, UTC)
    assert w.start.date().isoformat() == start and w.end.date().isoformat() == end
    assert w.label == start


def test_timezone_and_week_start():
    # 23:30 UTC on Mar 15 is already Mar 16 in Paris.
    w = period_window(ts("2026-03-15T23:30:00"), "daily", PARIS)
    assert w.start.isoformat() == "2026-03-16T00:00:00+01:00"
    w = period_window(ts("2026-03-15T12:00:00"), "weekly", UTC, week_start=6)
    assert w.label == "2026-03-15"


def test_dst_day_is_23_hours():
    w = period_window(ts("2026-03-29T12:00:00", PARIS), "daily", PARIS)
    assert w.end_ts - w.start.timestamp() == 23 * 3600
