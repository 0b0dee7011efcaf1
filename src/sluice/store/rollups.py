"""Rollups: hourly aggregates of the request log, written with the records they count.

The writer's batch insert (``insert_requests``) aggregates the rows it actually inserted (ids not
already in the log, so a replayed spool is never counted twice) and adds them to these tables in
the same transaction, so a rollup always equals the raw records it covers. The console's charts
and spend reports read them instead of scanning the log; raw records may be deleted by retention
(``store.retention_days``) while rollups are kept.

- ``rollup_hour``: per hour x team x key x model x provider x route x error source x kind:
  requests, errors, tokens, exact cost (nano-USD), unpriced requests, latency sum, retried
  requests, extra attempts, fallbacks (answered by another target than the first tried);
- ``rollup_tag_hour``: spend per hour x tag x team x key x model x provider x route (a request with
  two tags counts once under each);
- ``rollup_user_hour``: spend per hour x end user x team (users are many: they get a narrow table);
- ``rollup_day``, ``rollup_tag_day``, ``rollup_user_day``, ``rollup_latency_day``: the same per
  UTC day, for long periods;
- ``rollup_dim_day``: spend per day x (one dimension: team, key, user, model, provider, route or
  tag) x its value x team, for the totals and top lists of long periods;
- ``rollup_latency_hour``: per hour x model x provider, histograms of latency and time to first
  token in log-spaced bins (each bin 20 % wide: a percentile read from them is within 10 %).

Dimensions are stored as ``''`` for "none" (a primary key column cannot be NULL) and read back as
NULL. ``rollup_meta.complete_from``: rollups cover every record from this time on (0 when the
tables were created over an empty log; else the first whole hour after they were created —
earlier periods are read from the raw log).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, Final

from sluice.store.rows import RequestRow
from sluice.store.schema_sql import REQUEST_COLUMNS

HOUR: Final = 3600
_I = {c: i for i, c in enumerate(REQUEST_COLUMNS)}
DIMS: Final = ("team", "key_id", "model", "provider", "route", "error_source", "error_kind")
TAG_DIMS: Final = ("tag", "team", "key_id", "model", "provider", "route")
USER_DIMS: Final = ("user_id", "team")
MEASURES: Final = (
    "requests", "errors", "prompt_tokens", "completion_tokens", "cached_tokens", "cost_nusd",
    "unpriced", "latency_ms_sum", "retried", "extra_attempts", "fallbacks",
)  # fmt: skip
TAG_MEASURES: Final = ("requests", "errors", "prompt_tokens", "completion_tokens", "cost_nusd", "unpriced")
LATENCY_DIMS: Final = ("model", "provider", "metric", "bin")
#: Histogram bins grow by this factor: bin b holds [R**b, R**(b+1)) ms (bin 0 also holds < 1 ms).
RATIO: Final = 1.2
_LOG_R: Final = math.log(RATIO)


def hour_of(ts: float) -> int:
    return int(ts // HOUR) * HOUR


def hour_ceil(ts: float) -> int:
    return math.ceil(ts / HOUR) * HOUR


def latency_bin(ms: float) -> int:
    return max(0, int(math.log(max(ms, 1.0)) / _LOG_R))


def bin_value(b: int) -> float:
    """A bin's representative value: its geometric middle."""
    return float(RATIO ** (b + 0.5))


def model_label(requested: str | None, served: str | None) -> str | None:
    """As the spend report labels models (``GROUP_COLUMNS['model']``)."""
    if served is None or served == requested:
        return requested
    if requested is None:
        return served
    return f"{requested} -> {served}"


def _fell_back(detail: str) -> bool:
    try:
        attempts = json.loads(detail)
    except ValueError:
        return False
    if not isinstance(attempts, list) or len(attempts) < 2:
        return False
    first, last = attempts[0], attempts[-1]
    return (
        isinstance(first, dict)
        and isinstance(last, dict)
        and ((first.get("provider"), first.get("model")) != (last.get("provider"), last.get("model")))
    )


def _add(
    acc: dict[tuple[Any, ...], list[int | float]], key: tuple[Any, ...], values: Sequence[int | float]
) -> None:
    cur = acc.get(key)
    if cur is None:
        acc[key] = list(values)
    else:
        for i, v in enumerate(values):
            cur[i] += v


def aggregate(rows: Sequence[RequestRow]) -> list[list[tuple[Any, ...]]]:
    """The batch's rows for ``rollup_hour``, ``rollup_tag_hour``, ``rollup_user_hour``,
    ``rollup_latency_hour`` and ``rollup_dim_day``."""
    main: dict[tuple[Any, ...], list[int | float]] = {}
    users: dict[tuple[Any, ...], list[int | float]] = {}
    dims: dict[tuple[Any, ...], list[int | float]] = {}
    tags: dict[tuple[Any, ...], list[int | float]] = {}
    lat: dict[tuple[Any, ...], list[int | float]] = {}
    for r in rows:
        bucket = hour_of(r[_I["ts"]])
        model = model_label(r[_I["requested_model"]], r[_I["served_model"]]) or ""
        team, key, user = r[_I["team"]] or "", r[_I["key_id"]] or "", r[_I["user_id"]] or ""
        provider, route = r[_I["provider"]] or "", r[_I["route"]] or ""
        status, attempts = r[_I["status"]], r[_I["attempts"]]
        prompt, completion = r[_I["prompt_tokens"]], r[_I["completion_tokens"]]
        cost = r[_I["cost_nusd"]]
        error = 1 if status >= 400 else 0
        unpriced = 1 if cost is None and prompt + completion > 0 else 0
        retried = 1 if attempts > 1 else 0
        fallback = 1 if retried and _fell_back(r[_I["attempts_detail"]] or "[]") else 0
        spend = (1, error, prompt, completion)
        _add(users, (bucket, user, team), (*spend, cost or 0, unpriced))
        day, values = day_of(bucket), (*spend, cost or 0, unpriced)
        for dim, value in (("team", team), ("key", key), ("user", user), ("model", model),
                           ("provider", provider), ("route", route)):  # fmt: skip
            _add(dims, (day, dim, value, team), values)
        _add(main, (bucket, team, key, model, provider, route, r[_I["error_source"]] or "", r[_I["error_kind"]] or ""),
             (*spend, r[_I["cached_tokens"]], cost or 0, unpriced, r[_I["latency_ms"]], retried,
              max(0, attempts - 1), fallback))  # fmt: skip
        for tag in json.loads(r[_I["tags"]] or "[]"):
            _add(dims, (day, "tag", str(tag), team), values)
            _add(
                tags,
                (bucket, str(tag), team, key, model, provider, route),
                (*spend, cost or 0, unpriced),
            )
        if not error:
            _add(lat, (bucket, model, provider, "latency", latency_bin(r[_I["latency_ms"]])), (1,))
            ttft = r[_I["ttft_ms"]]
            if ttft is not None:
                _add(lat, (bucket, model, provider, "ttft", latency_bin(ttft)), (1,))
    return [[(*k, *v) for k, v in table.items()] for table in (main, tags, users, lat, dims)]


def _upsert(table: str, dims: Sequence[str], measures: Sequence[str]) -> str:
    cols = ("bucket", *dims, *measures)
    sets = ", ".join(f"{m} = {table}.{m} + excluded.{m}" for m in measures)
    return (
        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)}) "
        f"ON CONFLICT ({', '.join(('bucket', *dims))}) DO UPDATE SET {sets}"
    )


UPSERTS: Final = (
    _upsert("rollup_hour", DIMS, MEASURES),
    _upsert("rollup_tag_hour", TAG_DIMS, TAG_MEASURES),
    _upsert("rollup_user_hour", USER_DIMS, TAG_MEASURES),
    _upsert("rollup_latency_hour", LATENCY_DIMS, ("count",)),
)
#: The daily twins of the spend rollups (long periods read 24 times fewer rows).
DAY_UPSERTS: Final = (
    _upsert("rollup_day", DIMS, MEASURES),
    _upsert("rollup_tag_day", TAG_DIMS, TAG_MEASURES),
    _upsert("rollup_user_day", USER_DIMS, TAG_MEASURES),
    _upsert("rollup_latency_day", LATENCY_DIMS, ("count",)),
)
DAY: Final = 86400
#: One dimension at a time, per day and team: what a long period's totals and top lists read
#: (a few rows per value, where the full daily rollup has one per combination of values).
DIM_DAY_DIMS: Final = ("dim", "value", "team")
DIM_DAY_UPSERT: Final = _upsert("rollup_dim_day", DIM_DAY_DIMS, TAG_MEASURES)


def day_of(ts: float) -> int:
    return int(ts // DAY) * DAY


def by_day(rows: list[tuple[Any, ...]], ndims: int) -> list[tuple[Any, ...]]:
    """Hourly rollup rows (bucket, dims..., measures...) summed per day."""
    acc: dict[tuple[Any, ...], list[int | float]] = {}
    for r in rows:
        _add(acc, (day_of(r[0]), *r[1 : 1 + ndims]), r[1 + ndims :])
    return [(*k, *v) for k, v in acc.items()]


def upserts(rows: Sequence[RequestRow]) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """(statement, parameter rows) to add ``rows`` to the rollups, hourly and daily."""
    *hourly, per_dim = aggregate(rows)
    shapes = (DIMS, TAG_DIMS, USER_DIMS, LATENCY_DIMS)
    daily = [by_day(t, len(d)) for t, d in zip(hourly, shapes, strict=True)]
    pairs = [
        *zip(UPSERTS, hourly, strict=True),
        *zip(DAY_UPSERTS, daily, strict=True),
        (DIM_DAY_UPSERT, per_dim),
    ]
    return [(sql, params) for sql, params in pairs if params]


def new_rows(rows: Sequence[RequestRow], existing: set[str]) -> list[RequestRow]:
    """The rows an ``INSERT ... DO NOTHING`` will insert: ids not stored yet, each id once."""
    seen = set(existing)
    out = []
    for r in rows:
        if r[0] not in seen:
            seen.add(r[0])
            out.append(r)
    return out


def rollup_ddl(real: str, bigint: str) -> list[str]:
    def table(name: str, dims: Sequence[str], measures: Sequence[str], dim_type: dict[str, str]) -> str:
        d = ", ".join(f"{c} {dim_type.get(c, 'TEXT')} NOT NULL DEFAULT ''" for c in dims)
        m = ", ".join(f"{c} {real if c == 'latency_ms_sum' else bigint} NOT NULL DEFAULT 0" for c in measures)
        return (
            f"CREATE TABLE IF NOT EXISTS {name} (bucket {bigint} NOT NULL, {d}, {m}, "
            f"PRIMARY KEY (bucket, {', '.join(dims)}))"
        )

    return [
        table("rollup_hour", DIMS, MEASURES, {}),
        table("rollup_tag_hour", TAG_DIMS, TAG_MEASURES, {}),
        table("rollup_user_hour", USER_DIMS, TAG_MEASURES, {}),
        table("rollup_day", DIMS, MEASURES, {}),
        table("rollup_tag_day", TAG_DIMS, TAG_MEASURES, {}),
        table("rollup_user_day", USER_DIMS, TAG_MEASURES, {}),
        # Keyed by dimension first: a query reads one dimension's rows over a range of days.
        table("rollup_dim_day", DIM_DAY_DIMS, TAG_MEASURES, {}).replace(
            "PRIMARY KEY (bucket, dim, value, team)", "PRIMARY KEY (dim, bucket, value, team)"
        ),
        *(
            table(name, LATENCY_DIMS, ("count",), {"bin": bigint}).replace(
                f"bin {bigint} NOT NULL DEFAULT ''", f"bin {bigint} NOT NULL"
            )
            for name in ("rollup_latency_hour", "rollup_latency_day")
        ),
        f"CREATE TABLE IF NOT EXISTS rollup_meta (name TEXT PRIMARY KEY, value {real} NOT NULL)",
    ]


def complete_from(log_is_empty: bool, now: float) -> float:
    """Where rollups made now are complete from (see the module's doc)."""
    return 0.0 if log_is_empty else float(hour_ceil(now))
