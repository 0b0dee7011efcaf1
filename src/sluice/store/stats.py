"""Latency tails from the request log: request counts, errors by source, and p50 / p95 / p99 /
p999 of latency and time to first token, grouped (``sluice stats``, ``GET /admin/stats``).

Percentiles are exact, nearest-rank (PostgreSQL's ``percentile_disc``): the smallest recorded
value with at least that share of the requests at or below it. PostgreSQL computes them in the
database; SQLite, which has no percentile function, reads the group's values in the store's own
thread and sorts them there, never on the event loop. Shadow calls are left out: these figures are
about the callers' traffic.
"""

from __future__ import annotations

import math
import sqlite3
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, TypeAlias

StatsBy: TypeAlias = Literal["model", "provider", "route", "team"]
STATS_BY_VALUES: Final[tuple[StatsBy, ...]] = ("model", "provider", "route", "team")
#: ``model`` is the model the caller asked for, so failed requests count where they were aimed.
STATS_COLUMNS: Final = {"model": "requested_model", "provider": "provider", "route": "route", "team": "team"}
QUANTILES: Final = (0.5, 0.95, 0.99, 0.999)

#: Who failed, as the metrics say it (``sluice_requests_total{error_source}``).
_PROVIDER = "coalesce(error_source, '') = 'provider'"
_CLIENT = f"status >= 400 AND NOT ({_PROVIDER}) AND (status = 499 OR (status < 500 AND status <> 429))"
_GATEWAY = f"status >= 400 AND NOT ({_PROVIDER}) AND NOT ({_CLIENT})"


@dataclass(slots=True)
class LatencyRow:
    group: str | None
    requests: int = 0
    errors_provider: int = 0
    errors_gateway: int = 0
    errors_client: int = 0
    #: quantile -> milliseconds (None when the group has no sample)
    latency_ms: dict[float, float | None] = field(default_factory=dict)
    ttft_ms: dict[float, float | None] = field(default_factory=dict)
    streamed: int = 0

    def to_dict(self, by: str) -> dict[str, object]:
        def q(values: dict[float, float | None]) -> dict[str, float | None]:
            return {_qname(k): (round(v, 3) if v is not None else None) for k, v in values.items()}

        errors = self.errors_provider + self.errors_gateway + self.errors_client
        return {
            by: self.group, "requests": self.requests, "errors": errors,
            "error_rate": round(errors / self.requests, 6) if self.requests else 0.0,
            "errors_by_source": {"provider": self.errors_provider, "gateway": self.errors_gateway,
                                 "client": self.errors_client},
            "latency_ms": q(self.latency_ms), "ttft_ms": q(self.ttft_ms), "streamed_with_ttft": self.streamed,
        }  # fmt: skip


def _qname(q: float) -> str:
    return "p" + f"{q * 100:g}".replace(".", "")


def nearest_rank(sorted_values: Sequence[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def _counts_sql(col: str, placeholder: str) -> str:
    return (
        f"SELECT {col} AS g, count(*), sum(CASE WHEN {_PROVIDER} THEN 1 ELSE 0 END), "
        f"sum(CASE WHEN {_GATEWAY} THEN 1 ELSE 0 END), sum(CASE WHEN {_CLIENT} THEN 1 ELSE 0 END) "
        f"FROM requests WHERE ts >= {placeholder} AND shadow_of IS NULL GROUP BY g ORDER BY g"
    )


def sqlite_stats(conn: sqlite3.Connection, by: StatsBy, since: float | None) -> list[LatencyRow]:
    """Runs in the SQLite store's thread."""
    col = STATS_COLUMNS[by]
    rows = {r[0]: LatencyRow(r[0], r[1], r[2] or 0, r[3] or 0, r[4] or 0)
            for r in conn.execute(_counts_sql(col, "?"), (since or 0.0,))}  # fmt: skip
    lat: defaultdict[str | None, list[float]] = defaultdict(list)
    ttft: defaultdict[str | None, list[float]] = defaultdict(list)
    sql = f"SELECT {col}, latency_ms, ttft_ms FROM requests WHERE ts >= ? AND shadow_of IS NULL"
    for g, latency, first in conn.execute(sql, (since or 0.0,)):
        lat[g].append(latency)
        if first is not None:
            ttft[g].append(first)
    for g, row in rows.items():
        values, firsts = sorted(lat[g]), sorted(ttft[g])
        row.latency_ms = {q: nearest_rank(values, q) for q in QUANTILES}
        row.ttft_ms = {q: nearest_rank(firsts, q) for q in QUANTILES}
        row.streamed = len(firsts)
    return list(rows.values())


def postgres_stats_sql(by: StatsBy) -> tuple[str, str]:
    """(counts, percentiles): both take ``since`` as $1."""
    col = STATS_COLUMNS[by]
    qs = ", ".join(str(q) for q in QUANTILES)
    tails = (
        f"SELECT {col} AS g, percentile_disc(ARRAY[{qs}]) WITHIN GROUP (ORDER BY latency_ms), "
        f"percentile_disc(ARRAY[{qs}]) WITHIN GROUP (ORDER BY ttft_ms), count(ttft_ms) "
        f"FROM requests WHERE ts >= $1 AND shadow_of IS NULL GROUP BY g"
    )
    return _counts_sql(col, "$1"), tails


def postgres_rows(counts: Sequence[Sequence[object]], tails: Sequence[Sequence[object]]) -> list[LatencyRow]:
    by_group = {r[0]: r for r in tails}
    out: list[LatencyRow] = []
    for r in counts:
        g = r[0]
        assert g is None or isinstance(g, str)
        row = LatencyRow(g, int(r[1]), int(r[2] or 0), int(r[3] or 0), int(r[4] or 0))  # type: ignore[call-overload]
        t = by_group.get(g)
        lat = list(t[1] or []) if t is not None else []  # type: ignore[call-overload]
        first = list(t[2] or []) if t is not None else []  # type: ignore[call-overload]
        row.latency_ms = {
            q: (float(v) if v is not None else None)
            for q, v in zip(QUANTILES, lat or [None] * 4, strict=True)
        }
        row.ttft_ms = {
            q: (float(v) if v is not None else None)
            for q, v in zip(QUANTILES, first or [None] * 4, strict=True)
        }
        row.streamed = int(t[3]) if t is not None else 0  # type: ignore[call-overload]
        out.append(row)
    return out
