"""The console's reads besides spend (``insights.py``): the paged request log, one request, and
reliability from the rollups (latency percentiles from histograms, errors, retries, fallbacks)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from sluice.errors import BadRequest
from sluice.store.base import Store
from sluice.store.rollups import bin_value, day_of, hour_of

LIST_COLUMNS: Final = (
    "id", "ts", "team", "key_id", "user_id", "tags", "requested_model", "served_model", "provider",
    "route", "stream", "status", "error_source", "error_kind", "prompt_tokens", "completion_tokens",
    "cost_nusd", "latency_ms", "ttft_ms", "attempts", "shadow_of",
)  # fmt: skip
DETAIL_COLUMNS: Final = (*LIST_COLUMNS, "endpoint", "error_message", "cached_tokens", "cache_write_tokens",
                         "reasoning_tokens", "attempts_detail", "note", "route_reason", "prices", "cost_estimated")  # fmt: skip
PAGE_MAX: Final = 200
#: Errors the gateway answered because of the request itself (the caller's to fix): shown as
#: source ``client``; the gateway's own (rate limits, budgets, outages) stay ``gateway``.
CLIENT_KINDS: Final = frozenset({"bad_request", "auth", "permission", "not_found", "too_large",
                                 "unsupported_media_type"})  # fmt: skip
PERCENTILES: Final = {"p50": 0.5, "p95": 0.95, "p99": 0.99, "p999": 0.999}


@dataclass
class RequestFilter:
    """What the request log may be filtered by (each optional; all must match)."""

    since: float | None = None
    until: float | None = None
    eq: dict[str, str] = field(default_factory=dict)  # column -> value
    model: str | None = None
    status: str | None = None
    tag: str | None = None
    teams: frozenset[str] | None = None
    #: Keyset cursor: (ts, id) of the last row of the previous page.
    before: tuple[float, str] | None = None
    limit: int = 50


_EQ: Final = {
    "team": "team",
    "key": "key_id",
    "user": "user_id",
    "route": "route",
    "provider": "provider",
    "id": "id",
}


def parse_filter(q: Mapping[str, str], since: float | None, until: float | None) -> RequestFilter:
    f = RequestFilter(since=since, until=until)
    f.eq = {col: q[name] for name, col in _EQ.items() if q.get(name)}
    f.model, f.status, f.tag = q.get("model") or None, q.get("status") or None, q.get("tag") or None
    if (
        f.status is not None
        and f.status not in ("ok", "error", "2xx", "4xx", "5xx")
        and not f.status.isdigit()
    ):
        raise BadRequest("status must be a code (429), 2xx, 4xx, 5xx, ok or error", param="status")
    try:
        f.limit = min(max(int(q.get("limit", "50")), 1), PAGE_MAX)
        if q.get("before"):
            ts, _, rid = q["before"].partition(":")
            f.before = (float(ts), rid)
    except ValueError:
        raise BadRequest("limit must be an integer and before a cursor 'ts:id'") from None
    return f


def _where(store: Store, f: RequestFilter) -> tuple[str, list[Any]]:
    clauses, params = ["1 = 1"], []  # type: tuple[list[str], list[Any]]
    if f.since is not None:
        clauses.append("ts >= ?")
        params.append(f.since)
    if f.until is not None:
        clauses.append("ts < ?")
        params.append(f.until)
    for col, value in f.eq.items():
        clauses.append(f"{col} = ?")
        params.append(value)
    if f.model is not None:
        clauses.append("(requested_model = ? OR served_model = ?)")
        params.extend([f.model, f.model])
    if f.status is not None:
        clauses.append(_status_clause(f.status))
        if f.status.isdigit():
            params.append(int(f.status))
    if f.tag is not None:  # tags are a JSON list of strings: find the quoted tag
        clauses.append("instr(tags, ?) > 0" if store.dialect == "sqlite" else "strpos(tags, ?) > 0")
        params.append(json.dumps(f.tag))
    if f.teams is not None:
        clauses.append(f"team IN ({', '.join('?' for _ in f.teams)})" if f.teams else "1 = 0")
        params.extend(sorted(f.teams))
    if f.before is not None:
        clauses.append("(ts < ? OR (ts = ? AND id < ?))")
        params.extend([f.before[0], f.before[0], f.before[1]])
    return " AND ".join(clauses), params


def _status_clause(status: str) -> str:
    if status.isdigit():
        return "status = ?"
    return {"ok": "status < 400", "error": "status >= 400", "2xx": "status BETWEEN 200 AND 299",
            "4xx": "status BETWEEN 400 AND 499", "5xx": "status >= 500"}[status]  # fmt: skip


def _row_view(columns: tuple[str, ...], row: tuple[Any, ...]) -> dict[str, Any]:
    v = dict(zip(columns, row, strict=True))
    v["tags"] = json.loads(v["tags"] or "[]")
    v["stream"] = bool(v["stream"])
    v["user"] = v.pop("user_id")
    v["cost_usd"] = v["cost_nusd"] / 1e9 if v["cost_nusd"] is not None else None
    return v


async def list_requests(store: Store, f: RequestFilter) -> dict[str, Any]:
    where, params = _where(store, f)
    sql = f"SELECT {', '.join(LIST_COLUMNS)} FROM requests WHERE {where} ORDER BY ts DESC, id DESC LIMIT ?"
    rows = await store.fetch(sql, [*params, f.limit])
    data = [_row_view(LIST_COLUMNS, r) for r in rows]
    nxt = f"{data[-1]['ts']!r}:{data[-1]['id']}" if len(data) == f.limit else None
    return {"object": "list", "data": data, "next_before": nxt}


async def get_request(store: Store, request_id: str, teams: frozenset[str] | None) -> dict[str, Any] | None:
    """One request with its attempts, route reason and prices; None if missing or out of scope."""
    rows = await store.fetch(f"SELECT {', '.join(DETAIL_COLUMNS)} FROM requests WHERE id = ?", [request_id])
    if not rows:
        return None
    v = _row_view(DETAIL_COLUMNS, rows[0])
    if teams is not None and v["team"] not in teams:
        return None
    v["attempts_detail"] = json.loads(v["attempts_detail"] or "[]")
    v["prices"] = json.loads(v["prices"]) if v["prices"] else None
    v["cost_estimated"] = bool(v["cost_estimated"])
    v["payload"] = None  # request payloads are not stored by this version of the log
    return v


def _source(source: object, kind: object) -> str | None:
    if source == "gateway" and kind in CLIENT_KINDS:
        return "client"
    return str(source) if source else None


def percentiles(hist: Mapping[int, int]) -> dict[str, float | None]:
    """p50 … p999 of a histogram (bin -> count), each the middle of its bin (within 10 %)."""
    total = sum(hist.values())
    out: dict[str, float | None] = {}
    for name, q in PERCENTILES.items():
        if total == 0:
            out[name] = None
            continue
        rank, seen = q * total, 0
        for b in sorted(hist):
            seen += hist[b]
            if seen >= rank:
                out[name] = round(bin_value(b), 1)
                break
    return out


#: Periods longer than this read the daily rollups (and chart per day).
DAILY_AFTER_S: Final = 2 * 86400


async def reliability(
    store: Store, since: float, teams: frozenset[str] | None, now: float | None = None
) -> dict[str, Any]:
    """From the rollups: whole hours from the one ``since`` falls in (whole days, charted per day,
    for periods over two days)."""
    daily = (now if now is not None else time.time()) - since > DAILY_AFTER_S
    start = day_of(since) if daily else hour_of(since)
    unit = "day" if daily else "hour"
    by_target: dict[tuple[str, str, str], dict[int, int]] = {}
    series: dict[tuple[int, str], dict[int, int]] = {}
    lat_table = f"rollup_latency_{unit}"
    sql = (f"SELECT model, provider, metric, bin, sum(count) FROM {lat_table} WHERE bucket >= ? "
           "GROUP BY model, provider, metric, bin")  # fmt: skip
    for model, provider, metric, b, n in await store.fetch(sql, [start]):
        hist = by_target.setdefault((str(model), str(provider), str(metric)), {})
        hist[int(b)] = int(n)  # type: ignore[call-overload]
    sql = f"SELECT bucket, metric, bin, sum(count) FROM {lat_table} WHERE bucket >= ? GROUP BY bucket, metric, bin"
    for bucket, metric, b, n in await store.fetch(sql, [start]):
        series.setdefault((int(bucket), str(metric)), {})[int(b)] = int(n)  # type: ignore[call-overload]
    latency = [
        {
            "model": m or None,
            "provider": p or None,
            "metric": metric,
            "count": sum(h.values()),
            **percentiles(h),
        }
        for (m, p, metric), h in sorted(by_target.items())
    ]
    over_time = [
        {"bucket": b, "metric": metric, **percentiles(h)} for (b, metric), h in sorted(series.items())
    ]
    team_sql, team_params = "", []  # type: tuple[str, list[Any]]
    if teams is not None:
        team_sql = f" AND team IN ({', '.join('?' for _ in teams)})" if teams else " AND 1 = 0"
        team_params = sorted(teams)
    errors = await store.fetch(
        f"SELECT error_source, error_kind, sum(requests) FROM rollup_{unit} WHERE bucket >= ? AND errors > 0"
        f"{team_sql} GROUP BY error_source, error_kind ORDER BY 3 DESC", [start, *team_params],
    )  # fmt: skip
    attempts = await store.fetch(
        "SELECT model, provider, sum(requests), sum(errors), sum(retried), sum(extra_attempts), sum(fallbacks), "
        f"sum(latency_ms_sum) FROM rollup_{unit} WHERE bucket >= ?{team_sql} GROUP BY model, provider ORDER BY 3 DESC",
        [start, *team_params],
    )  # fmt: skip
    return {
        "since": start, "step": unit, "latency": latency, "over_time": over_time,
        "errors": [{"source": _source(s, k), "kind": k or None, "requests": int(n)} for s, k, n in errors],  # type: ignore[call-overload]
        "attempts": [
            {"model": m or None, "provider": p or None, "requests": int(r), "errors": int(e), "retried": int(rt),  # type: ignore[call-overload]
             "extra_attempts": int(x), "fallbacks": int(fb), "mean_latency_ms": round(float(ls) / int(r), 1) if r else None}  # type: ignore[call-overload, arg-type]
            for m, p, r, e, rt, x, fb, ls in attempts
        ],
    }  # fmt: skip
