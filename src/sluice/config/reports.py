"""``reports:`` — scheduled spend reports, each period's sent once to a destination."""

from __future__ import annotations

from typing import Literal

import msgspec


class ReportTarget(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    #: Where the report goes: ``webhook`` is ``alerts.webhook`` (which must then be set).
    to: Literal["webhook"] = "webhook"


class ReportsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Each team's spend, top models and change on the previous period, for the period just ended
    (UTC days, ISO weeks from Monday, calendar months)."""

    daily: ReportTarget | None = None
    weekly: ReportTarget | None = None
    monthly: ReportTarget | None = None

    def periods(self) -> list[str]:
        return [p for p in ("daily", "weekly", "monthly") if getattr(self, p) is not None]
