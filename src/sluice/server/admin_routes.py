"""The admin API (``/admin/*``) behind the admin keys and their roles (``server/authz.py``), and
the health probes. Errors are raised, and rendered by the dispatcher (in OpenAI's format: these
paths belong to no other dialect)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec

from sluice.errors import BadRequest, NotFound, PermissionDenied
from sluice.limits.model import Level
from sluice.pipeline.auth import key_limits
from sluice.schema.openai import decode_json_object, encode
from sluice.server import audit_log
from sluice.server.authz import Admin, authorize, team_scope
from sluice.server.dispatch import RouteTable
from sluice.server.http import read_json_body
from sluice.server.services import Services
from sluice.server.wire import Request, Response
from sluice.store import insights
from sluice.store.base import StoreUnavailable
from sluice.store.insights import parse_dims
from sluice.store.keys import KeyCreate, key_from_spec, validate_key_request
from sluice.store.records import KeyRecord
from sluice.store.views import iso, key_view, parse_since

routes = RouteTable()


def _json(payload: Any, status: int = 200) -> Response:
    return Response(status, encode(payload))


@routes.post("/admin/keys")
async def create_key(request: Request) -> Response:
    svc = request.services
    admin = await authorize(request, "write")  # before a byte of the body is read
    data = decode_json_object(await read_json_body(request, limit=65536))
    try:
        spec = msgspec.convert(data, KeyCreate)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"invalid key request: {exc}") from None
    if not admin.sees(spec.team):
        raise PermissionDenied(f"admin key {admin.describe()}: it cannot create keys for team '{spec.team}'")
    validate_key_request(svc.config.models, svc.config.teams, spec)
    secret, record = key_from_spec(svc.hmac_key, spec)
    await svc.store.create_key(record)
    await svc.keys.reload(force=True)
    view = key_view(record)
    await audit_log.record(request, admin, "key.created", record.id, record.team, None, view)
    return _json({**view, "key": secret}, status=201)


@routes.get("/admin/keys")
async def list_keys(request: Request) -> Response:
    svc = request.services
    scope = team_scope(request, await authorize(request))
    keys = await svc.store.list_keys(include_revoked=True)
    shown = [key_view(k) for k in keys if scope is None or k.team in scope]
    return _json({"object": "list", "data": shown})


async def scoped_key(request: Request, admin: Admin, key_id: str) -> KeyRecord:
    """The key with this id, if the caller may see it: another team's key is a 404, as a missing one."""
    for k in await request.services.store.list_keys(include_revoked=True):
        if k.id == key_id and admin.sees(k.team):
            return k
    raise NotFound(f"no key with id '{key_id}'")


@routes.delete("/admin/keys/{key_id}")
async def revoke_key(request: Request) -> Response:
    svc = request.services
    key_id = request.param("key_id")
    admin = await authorize(request, "write")
    key = await scoped_key(request, admin, key_id)
    if key.revoked_at is not None or not await svc.store.revoke_key(key_id, time.time()):
        raise NotFound(f"no active key with id '{key_id}'")
    svc.keys.forget(key_id)
    after = {**key_view(key), "revoked_at": iso(time.time())}
    await audit_log.record(request, admin, "key.revoked", key_id, key.team, key_view(key), after)
    return _json({"id": key_id, "revoked": True})


@routes.get("/admin/spend")
async def spend(request: Request) -> Response:
    svc = request.services
    admin = await authorize(request)
    group_by = request.query.get("group_by", "team")
    dims = parse_dims(group_by)
    since = parse_since(request.query.get("since"))
    scope = team_scope(request, admin)
    rows = await insights.spend(svc.store, dims, since, teams=scope)
    saved = await insights.saved(svc.store, dims, since, teams=scope)
    data = []
    for r in rows:
        view = r.view(dims)
        if saved is not None:
            view["saved_usd"] = saved.get(tuple(r.group), 0.0)
        data.append({"group": r.group[0] if len(dims) == 1 else list(r.group), **view})
    return _json({"group_by": group_by, "since": iso(since) if since is not None else None, "data": data})


@routes.get("/admin/budgets")
async def budgets(request: Request) -> Response:
    """Each budget's limit, spend, reservations and reset time in the current period."""
    svc = request.services
    scope = team_scope(request, await authorize(request))
    rows = await svc.limiter.budget_report(await budget_levels(svc, scope))
    return _json({"object": "list", "data": [r.to_dict() for r in rows]})


async def budget_levels(svc: Services, teams: frozenset[str] | None = None) -> list[Level]:
    """Every budget in force; ``teams``: only those teams' budgets and their keys' (end users'
    budgets span teams, so a team-scoped caller does not see them)."""
    levels = [
        Level("team", n, budget=t.budget)
        for n, t in svc.config.teams.items()
        if t.budget is not None and (teams is None or n in teams)
    ]
    for key in await svc.store.list_keys(include_revoked=False):
        if teams is not None and key.team not in teams:
            continue
        limits = key_limits(key)
        if limits is not None and limits.budget is not None:
            levels.append(Level("key", key.id, budget=limits.budget, display=key.name))
    users = svc.config.limits.users
    if teams is None and users is not None and users.budget is not None:
        levels.extend(await svc.limiter.user_levels(users.budget))
    return levels


@routes.get("/admin/health")
async def health(request: Request) -> Response:
    """Routing health on this replica: each target's breaker, moving-average latency and time to
    first token, requests in flight; the retry budget; shadow calls in flight."""
    svc = request.services
    await authorize(request)  # targets' health is no team's data: every role reads it
    return _json(svc.router.health_view())


@routes.get("/healthz")
async def healthz(request: Request) -> Response:
    return _json({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: Request) -> Response:
    svc = request.services
    if svc.draining or svc.stopping:
        return _json({"status": "draining"}, 503)
    try:
        await asyncio.wait_for(svc.store.ping(), timeout=2.0)
    except (StoreUnavailable, TimeoutError) as exc:
        return _json({"status": "unavailable", "store": str(exc) or "timeout"}, 503)
    body = {"status": "ready", "store": "ok", "pending_records": svc.writer.pending}
    if svc.reloader is not None:  # a refused reload does not make a replica unready: the old policy serves
        view = svc.reloader.view()
        body["policy"] = {"version": view["version"], "last_error": view["last_error"],
                          "restart_required": view["restart_required"]}  # fmt: skip
    return _json(body)
