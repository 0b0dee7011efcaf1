"""The console's data, under ``/admin/`` and obeying the same roles (``server/authz.py``):
overview, reliability, the request log, teams and the policy in force. Spend and charts read the
rollups (``store/insights.py``); a team-scoped caller sees its teams' data only."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import msgspec

from sluice.config.secret import Secret
from sluice.errors import NotFound
from sluice.limits.model import Level
from sluice.schema.openai import encode
from sluice.server.admin_routes import budget_levels
from sluice.server.authz import authorize, team_scope
from sluice.server.dispatch import RouteTable
from sluice.server.wire import Request, Response
from sluice.store import console_queries, insights
from sluice.store.views import iso, key_view, parse_since

routes = RouteTable()
#: Top-N lists on the overview.
TOP = 10
_TOPS: tuple[insights.Dim, ...] = ("team", "app", "user", "tag", "model")


def _json(payload: Any) -> Response:
    return Response(200, encode(payload))


def _since(request: Request, default_s: float = 86400) -> float:
    value = parse_since(request.query.get("since"))
    return value if value is not None else time.time() - default_s


@routes.get("/admin/overview")
async def overview(request: Request) -> Response:
    """Totals, a series over time, top teams / apps / users / tags / models by spend, team budgets."""
    admin = await authorize(request)
    svc = request.services
    teams = team_scope(request, admin)
    since = _since(request)
    step: insights.Dim = "hour" if time.time() - since <= 2 * 86400 else "day"
    # One query set per figure, all at once (PostgreSQL runs them on several connections).
    dims: list[tuple[insights.Dim, ...]] = [(), (step,), *((d,) for d in _TOPS)]
    total, series, *top_rows = await asyncio.gather(
        *(insights.spend(svc.store, d, since, teams=teams) for d in dims)
    )
    tops = {}
    for dim, rows in zip(_TOPS, top_rows, strict=True):
        rows.sort(key=lambda r: (-r.cost_nusd, -r.requests))
        tops[dim] = [r.view((dim,)) for r in rows[:TOP]]
    levels = [lv for lv in await budget_levels(svc, teams) if lv.kind == "team"]
    budgets = [b.to_dict() for b in await svc.limiter.budget_report(levels)]
    totals = total[0].view(()) if total else insights.Spend((), 0, 0, 0, 0, 0, 0).view(())
    totals["error_rate"] = totals["errors"] / totals["requests"] if totals["requests"] else 0.0
    return _json({"since": iso(since), "step": step, "totals": totals,
                  "series": [r.view(("bucket",)) for r in series], "top": tops, "budgets": budgets})  # fmt: skip


@routes.get("/admin/reliability")
async def reliability(request: Request) -> Response:
    """Latency and time-to-first-token percentiles by model and provider and over time; errors by
    source and kind; retries and fallbacks (rollups, whole hours); breaker states now."""
    admin = await authorize(request)
    svc = request.services
    data = await console_queries.reliability(svc.store, _since(request), team_scope(request, admin))
    data["breakers"] = svc.router.health_view()
    return _json(data)


@routes.get("/admin/requests")
async def requests(request: Request) -> Response:
    """The request log, newest first, paged by ``before`` (``next_before`` of the previous page)."""
    admin = await authorize(request)
    q = request.query
    f = console_queries.parse_filter(q, parse_since(q.get("since")), parse_since(q.get("until")))
    f.teams = team_scope(request, admin)
    return _json(await console_queries.list_requests(request.services.store, f))


@routes.get("/admin/requests/{request_id}")
async def request_detail(request: Request) -> Response:
    admin = await authorize(request)
    rid = request.param("request_id")
    found = await console_queries.get_request(request.services.store, rid, admin.teams)
    if found is None:
        raise NotFound(f"no request with id '{rid}'")
    return _json(found)


@routes.get("/admin/teams")
async def teams(request: Request) -> Response:
    """Each team the caller may see: its policy (read-only), members' keys, spend, budget."""
    admin = await authorize(request)
    svc = request.services
    since = _since(request, 30 * 86400)
    scope = team_scope(request, admin)
    names = [n for n in svc.config.teams if scope is None or n in scope]
    spend = {
        r.group[0]: r.view(("team",)) for r in await insights.spend(svc.store, ("team",), since, teams=scope)
    }
    keys = [k for k in await svc.store.list_keys(include_revoked=True) if k.team in names]
    levels = [
        Level("team", n, budget=svc.config.teams[n].budget) for n in names if svc.config.teams[n].budget
    ]
    budgets = {b.name: b.to_dict() for b in await svc.limiter.budget_report(levels)}
    out = []
    for n in names:
        policy = msgspec.to_builtins(svc.config.teams[n])
        out.append({"team": n, "policy": policy, "keys": [key_view(k) for k in keys if k.team == n],
                    "spend": spend.get(n), "budget": budgets.get(n)})  # fmt: skip
    return _json({"since": iso(since), "data": out})


def policy_view(request: Request) -> dict[str, Any]:
    """The policy in force with every secret shown as where it is read from (``env:NAME``)."""
    svc = request.services

    def hook(obj: Any) -> Any:
        if isinstance(obj, Secret):
            return obj.source
        raise NotImplementedError(type(obj))

    doc = msgspec.to_builtins(svc.config, enc_hook=hook, str_keys=True)
    if svc.reloader is not None:  # the version a reload tracks (the file's hash), and its outcome
        reload_view = dict(svc.reloader.view())
        loaded = reload_view.get("loaded_at")
        if isinstance(loaded, int | float):
            reload_view["loaded_at"] = iso(loaded)
        return {**reload_view, "policy": doc}
    version = hashlib.sha256(msgspec.json.encode(doc, order="sorted")).hexdigest()[:12]
    return {"version": version, "loaded_at": iso(svc.started_at), "policy": doc}


@routes.get("/admin/policy")
async def policy(request: Request) -> Response:
    """The policy now in force, its version (a digest of it) and when it was loaded. A team-scoped
    caller gets its teams' part only."""
    admin = await authorize(request)
    view = policy_view(request)
    if admin.teams is not None:
        doc = view["policy"]
        view["policy"] = {"teams": {n: t for n, t in doc.get("teams", {}).items() if n in admin.teams},
                          "models": sorted(doc.get("models", {}))}  # fmt: skip
    return _json(view)
