"""The admin API (``/admin/*``) behind ``server.admin_key``, and the health probes. Errors are
raised, and rendered by the dispatcher (in OpenAI's format: these paths belong to no other dialect)."""

from __future__ import annotations

import asyncio
import hmac
import time
from typing import Any

import msgspec

from sluice.errors import AuthenticationFailed, BadRequest, NotFound, PermissionDenied
from sluice.limits.model import Level
from sluice.pipeline.auth import key_limits
from sluice.schema.openai import decode_json_object, encode
from sluice.server.dispatch import RouteTable
from sluice.server.http import read_json_body
from sluice.server.services import Services
from sluice.server.wire import Request, Response
from sluice.store.base import StoreUnavailable
from sluice.store.keys import KeyCreate, key_from_spec, validate_key_request
from sluice.store.records import GROUP_BY_VALUES
from sluice.store.views import iso, key_view, parse_since

routes = RouteTable()


def _json(payload: Any, status: int = 200) -> Response:
    return Response(status, encode(payload))


def _check_admin(request: Request) -> None:
    admin = request.services.config.server.admin_key
    if admin is None:
        raise PermissionDenied("the admin API is disabled: set server.admin_key in the policy file")
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationFailed("missing admin key: send 'Authorization: Bearer <admin key>'")
    if not hmac.compare_digest(token.strip().encode(), admin.reveal().encode()):
        raise AuthenticationFailed("invalid admin key")


check_admin = _check_admin  # for the other admin route modules


@routes.post("/admin/keys")
async def create_key(request: Request) -> Response:
    svc = request.services
    _check_admin(request)
    data = decode_json_object(await read_json_body(request, limit=65536))
    try:
        spec = msgspec.convert(data, KeyCreate)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"invalid key request: {exc}") from None
    validate_key_request(svc.config.models, svc.config.teams, spec)
    secret, record = key_from_spec(svc.hmac_key, spec)
    await svc.store.create_key(record)
    await svc.keys.reload(force=True)
    return _json({**key_view(record), "key": secret}, status=201)


@routes.get("/admin/keys")
async def list_keys(request: Request) -> Response:
    svc = request.services
    _check_admin(request)
    keys = await svc.store.list_keys(include_revoked=True)
    return _json({"object": "list", "data": [key_view(k) for k in keys]})


@routes.delete("/admin/keys/{key_id}")
async def revoke_key(request: Request) -> Response:
    svc = request.services
    key_id = request.param("key_id")
    _check_admin(request)
    if not await svc.store.revoke_key(key_id, time.time()):
        raise NotFound(f"no active key with id '{key_id}'")
    svc.keys.forget(key_id)
    return _json({"id": key_id, "revoked": True})


@routes.get("/admin/spend")
async def spend(request: Request) -> Response:
    svc = request.services
    group_by = request.query.get("group_by", "team")
    _check_admin(request)
    if group_by not in GROUP_BY_VALUES:
        raise BadRequest(f"group_by must be one of {', '.join(GROUP_BY_VALUES)}", param="group_by")
    since = parse_since(request.query.get("since"))
    rows = await svc.store.spend(group_by, since)
    data = [
        {"group": r.group, "requests": r.requests, "errors": r.errors, "prompt_tokens": r.prompt_tokens,
         "completion_tokens": r.completion_tokens, "cost_usd": float(r.cost_usd),
         "cost_nusd": int(r.cost_usd.scaleb(9)), "unpriced": r.unpriced, "saved_usd": round(r.saved_usd, 9)}
        for r in rows
    ]  # fmt: skip
    return _json({"group_by": group_by, "since": iso(since) if since is not None else None, "data": data})


@routes.get("/admin/budgets")
async def budgets(request: Request) -> Response:
    """Each budget's limit, spend, reservations and reset time in the current period."""
    svc = request.services
    _check_admin(request)
    rows = await svc.limiter.budget_report(await budget_levels(svc))
    return _json({"object": "list", "data": [r.to_dict() for r in rows]})


async def budget_levels(svc: Services) -> list[Level]:
    levels = [Level("team", n, budget=t.budget) for n, t in svc.config.teams.items() if t.budget is not None]
    for key in await svc.store.list_keys(include_revoked=False):
        limits = key_limits(key)
        if limits is not None and limits.budget is not None:
            levels.append(Level("key", key.id, budget=limits.budget, display=key.name))
    users = svc.config.limits.users
    if users is not None and users.budget is not None:
        levels.extend(await svc.limiter.user_levels(users.budget))
    return levels


@routes.get("/admin/health")
async def health(request: Request) -> Response:
    """Routing health on this replica: each target's breaker, moving-average latency and time to
    first token, requests in flight; the retry budget; shadow calls in flight."""
    svc = request.services
    _check_admin(request)
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
