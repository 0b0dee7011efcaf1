"""What the console and the spend reports read: grouped spend from rollups (the raw log only for
what rollups do not cover: the part-hour at the start of a period, and periods before rollups
began), and paged request listings. SQL is written once, with ``?`` placeholders, for both
backends (``store.dialect`` picks the few expressions that differ)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Literal, TypeAlias

from sluice.store.base import Store
from sluice.store.rollups import DAY, hour_ceil
from sluice.store.schema_sql import GROUP_COLUMNS, SPEND_AGGREGATES

Dim: TypeAlias = Literal["team", "key", "app", "user", "model", "provider", "route", "tag", "day", "hour"]
DIMENSIONS: Final[tuple[Dim, ...]] = (
    "team",
    "key",
    "app",
    "user",
    "model",
    "provider",
    "route",
    "tag",
    "day",
    "hour",
)

_ROLLUP: Final = {
    "team": "nullif(r.team, '')", "key": "nullif(r.key_id, '')", "user": "nullif(r.user_id, '')",
    "app": "coalesce(k.name, nullif(r.key_id, ''))", "model": "nullif(r.model, '')",
    "provider": "nullif(r.provider, '')", "route": "nullif(r.route, '')", "tag": "r.tag",
}  # fmt: skip
_RAW: Final = {
    "team": "q.team", "key": "q.key_id", "user": "q.user_id", "app": "coalesce(k.name, q.key_id)",
    "model": GROUP_COLUMNS["model"].replace("requested_model", "q.requested_model").replace(
        "served_model", "q.served_model"
    ),
    "provider": "q.provider", "route": "q.route",
}  # fmt: skip
_DAY: Final = {"sqlite": "strftime('%Y-%m-%d', {t}, 'unixepoch')",
               "postgres": "to_char(to_timestamp({t}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"}  # fmt: skip
_HOUR: Final = {"sqlite": "CAST(CAST({t} AS INTEGER) / 3600 * 3600 AS INTEGER)",
                "postgres": "(floor({t} / 3600) * 3600)::bigint"}  # fmt: skip
_TAG_FROM: Final = {
    "sqlite": ", json_each(q.tags) t",
    "postgres": ", jsonb_array_elements_text(q.tags::jsonb) t(value)",
}
_ROLLUP_SUMS: Final = "sum(r.requests), sum(r.errors), sum(r.prompt_tokens), sum(r.completion_tokens), sum(r.cost_nusd), sum(r.unpriced)"


@dataclass(frozen=True, slots=True)
class Spend:
    group: tuple[str | None, ...]
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    #: Exact: the sum of the records' nano-USD ledger values.
    cost_nusd: int
    unpriced: int

    @property
    def cost_usd(self) -> Decimal:
        return Decimal(self.cost_nusd).scaleb(-9)

    def view(self, dims: Sequence[str]) -> dict[str, Any]:
        return {
            **dict(zip(dims, self.group, strict=True)), "requests": self.requests, "errors": self.errors,
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "cost_usd": float(self.cost_usd), "cost_nusd": self.cost_nusd, "unpriced": self.unpriced,
        }  # fmt: skip


def parse_dims(value: str) -> tuple[Dim, ...]:
    """``team`` or ``team,model`` (at most two, no repeats)."""
    from sluice.errors import BadRequest

    dims = tuple(d.strip() for d in value.split(",") if d.strip())
    if not dims or len(dims) > 2 or len(set(dims)) != len(dims) or any(d not in DIMENSIONS for d in dims):
        raise BadRequest(
            f"group_by must be one or two (comma-separated) of {', '.join(DIMENSIONS)}; got {value!r}",
            param="group_by",
        )
    return dims  # type: ignore[return-value]


def _in(column: str, values: frozenset[str] | None) -> tuple[str, list[str]]:
    if values is None:
        return "", []
    if not values:
        return " AND 1 = 0", []
    return f" AND {column} IN ({', '.join('?' for _ in values)})", sorted(values)


async def complete_from(store: Store) -> float:
    rows = await store.fetch("SELECT value FROM rollup_meta WHERE name = 'complete_from'")
    return float(rows[0][0]) if rows else float("inf")  # type: ignore[arg-type]


async def spend(
    store: Store, dims: Sequence[Dim], since: float | None, *, teams: frozenset[str] | None = None
) -> list[Spend]:
    """Spend grouped by ``dims`` (none: one total) from ``since`` on, exact to the nano-dollar."""
    start = since or 0.0
    table = rollup_table(dims)
    full = max(float(hour_ceil(start)), await complete_from(store)) if table else float("inf")
    acc: dict[tuple[Any, ...], list[int]] = {}
    if full > start:
        for row in await _raw(store, dims, start, full, teams):
            _merge(acc, row, len(dims))
    if table is not None and full != float("inf"):
        # Whole hours up to the first midnight, then whole days (24 times fewer rows to read).
        day = float(day_ceil(full)) if "hour" not in dims else float("inf")
        for row in await _rollup(store, table, dims, full, day, teams):
            _merge(acc, row, len(dims))
        if day != float("inf"):
            dim = one_dimension(dims)
            daily = (
                _per_dim(store, dims, dim, day, teams) if dim is not None
                else _rollup(store, table.replace("_hour", "_day"), dims, day, None, teams)
            )  # fmt: skip
            for row in await daily:
                _merge(acc, row, len(dims))
    out = [Spend(k, *v) for k, v in acc.items() if v[0]]
    return sorted(out, key=lambda s: tuple("" if g is None else str(g) for g in s.group))


def _merge(acc: dict[tuple[Any, ...], list[int]], row: tuple[Any, ...], n: int) -> None:
    key = tuple(None if v is None else str(v) for v in row[:n])
    values = [int(v or 0) for v in row[n:]]
    cur = acc.setdefault(key, [0] * len(values))
    for i, v in enumerate(values):
        cur[i] += v


def day_ceil(ts: float) -> int:
    return -int(-ts // DAY) * DAY


def one_dimension(dims: Sequence[Dim]) -> str | None:
    """The ``rollup_dim_day`` dimension that answers ``dims``: a total or a per-day series reads
    the ``team`` rows (each request is under exactly one team value), ``app`` the ``key`` rows."""
    if not dims or dims == ("day",):
        return "team"
    if len(dims) == 1 and dims[0] in ("team", "key", "app", "user", "model", "provider", "route", "tag"):
        return "key" if dims[0] == "app" else dims[0]
    return None


async def _per_dim(
    store: Store, dims: Sequence[Dim], dim: str, since: float, teams: frozenset[str] | None
) -> list[tuple[Any, ...]]:
    expr = ""
    if dims == ("day",):
        expr = _DAY[store.dialect].format(t="r.bucket") + ", "
    elif dims == ("app",):
        expr = "coalesce(k.name, nullif(r.value, '')), "
    elif dims:
        expr = "nullif(r.value, ''), "
    join = " LEFT JOIN keys k ON k.id = r.value" if dims == ("app",) else ""
    where, params = _in("r.team", teams)
    sql = f"SELECT {expr}{_ROLLUP_SUMS} FROM rollup_dim_day r{join} WHERE r.dim = ? AND r.bucket >= ?{where}"
    if dims:
        sql += " GROUP BY 1"
    return await store.fetch(sql, [dim, int(since), *params])


def rollup_table(dims: Sequence[Dim]) -> str | None:
    """The rollup that has these dimensions; None: only the raw log has them (a user with
    anything but team or time)."""
    if "user" in dims:
        return "rollup_user_hour" if set(dims) <= {"user", "team", "day", "hour"} else None
    return "rollup_tag_hour" if "tag" in dims else "rollup_hour"


async def _rollup(
    store: Store, table: str, dims: Sequence[Dim], since: float, until: float | None,
    teams: frozenset[str] | None,
) -> list[tuple[Any, ...]]:  # fmt: skip
    exprs = [
        _DAY[store.dialect].format(t="r.bucket") if d == "day" else "r.bucket" if d == "hour" else _ROLLUP[d]
        for d in dims
    ]
    join = " LEFT JOIN keys k ON k.id = r.key_id" if "app" in dims else ""
    where, params = _in("r.team", teams)
    upper = [int(until)] if until is not None and until != float("inf") else []
    bounds = " AND r.bucket < ?" if upper else ""
    sql = (
        f"SELECT {', '.join([*exprs, _ROLLUP_SUMS])} FROM {table} r{join} WHERE r.bucket >= ?{bounds}{where}"
    )
    if exprs:
        sql += " GROUP BY " + ", ".join(str(i + 1) for i in range(len(exprs)))
    return await store.fetch(sql, [int(since), *upper, *params])


async def _raw(
    store: Store, dims: Sequence[Dim], since: float, until: float, teams: frozenset[str] | None
) -> list[tuple[Any, ...]]:
    exprs = []
    for d in dims:
        if d == "day":
            exprs.append(_DAY[store.dialect].format(t="q.ts"))
        elif d == "hour":
            exprs.append(_HOUR[store.dialect].format(t="q.ts"))
        else:
            exprs.append("t.value" if d == "tag" else _RAW[d])
    sources = "requests q" + (" LEFT JOIN keys k ON k.id = q.key_id" if "app" in dims else "")
    if "tag" in dims:
        sources += _TAG_FROM[store.dialect]
    where, params = _in("q.team", teams)
    aggregates = SPEND_AGGREGATES.replace("status", "q.status").replace("prompt_tokens", "q.prompt_tokens")
    aggregates = aggregates.replace("completion_tokens", "q.completion_tokens").replace(
        "cost_nusd", "q.cost_nusd"
    )
    sql = f"SELECT {', '.join([*exprs, aggregates])} FROM {sources} WHERE q.ts >= ? AND q.ts < ?{where}"
    if exprs:
        sql += " GROUP BY " + ", ".join(str(i + 1) for i in range(len(exprs)))
    return await store.fetch(sql, [since, until, *params])


#: Dimensions whose savings (``saved_usd`` of cache hits) are summed from the log by one column.
_SAVED_COLUMNS: Final = {"team": "team", "key": "key_id", "user": "user_id", "provider": "provider",
                         "route": "route", "model": GROUP_COLUMNS["model"]}  # fmt: skip


async def saved(
    store: Store, dims: Sequence[Dim], since: float | None, *, teams: frozenset[str] | None = None
) -> dict[tuple[str | None, ...], float] | None:
    """What cache hits saved, per group of one dimension, read from the hits' own records (a
    small share of the log); None for groupings it does not cover (two dimensions, tags, time)."""
    if len(dims) != 1 or dims[0] not in _SAVED_COLUMNS:
        return None
    col = _SAVED_COLUMNS[dims[0]]
    sql = f"SELECT {col}, sum(saved_usd) FROM requests WHERE cache IS NOT NULL AND ts >= ?"
    params: list[object] = [since or 0.0]
    if teams is not None:
        sql += " AND team IN (" + ", ".join("?" for _ in teams) + ")"
        params.extend(sorted(teams))
    rows = await store.fetch(sql + " GROUP BY 1", params)
    return {(None if r[0] is None else str(r[0]),): float(r[1] or 0.0) for r in rows}  # type: ignore[arg-type]
