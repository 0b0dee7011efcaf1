"""Calendar-aligned budget periods in a configured timezone. Pure: the instant is passed in."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sluice.config.limits import Period


@dataclass(frozen=True, slots=True)
class PeriodWindow:
    period: Period
    start: datetime
    end: datetime

    @property
    def label(self) -> str:
        """Names the period in state keys: its local start date (2026-11-01)."""
        return self.start.date().isoformat()

    start_ts: float = field(init=False, repr=False, compare=False)
    end_ts: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "start_ts", self.start.timestamp())
        object.__setattr__(self, "end_ts", self.end.timestamp())


def period_window(now: float, period: Period, tz: ZoneInfo, *, week_start: int = 0) -> PeriodWindow:
    """The period containing the instant ``now`` (Unix seconds).

    Boundaries are local midnights, so a day across a DST change is 23 or 25 hours long.
    ``week_start`` is a weekday number (0 = Monday, 6 = Sunday).
    """
    local = datetime.fromtimestamp(now, tz)
    day = local.date()
    if period == "daily":
        first = day
        last = first + timedelta(days=1)
    elif period == "weekly":
        first = day - timedelta(days=(day.weekday() - week_start) % 7)
        last = first + timedelta(days=7)
    else:
        first = day.replace(day=1)
        last = (
            first.replace(year=first.year + 1, month=1)
            if first.month == 12
            else first.replace(month=first.month + 1)
        )
    start = datetime(first.year, first.month, first.day, tzinfo=tz)
    end = datetime(last.year, last.month, last.day, tzinfo=tz)
    return PeriodWindow(period, start, end)
