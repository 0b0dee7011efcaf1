"""The admin API (``/admin/*``) behind ``server.admin_key``, and the health probes."""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec

from sluice.errors import AuthenticationFailed, BadRequest, NotFound, PermissionDenied, SluiceError
from sluice.limits.model import Level
from sluice.pipeline.auth import key_limits
from sluice.schema.openai import decode_json_object, encode
from sluice.server.dispatch import RouteTable
from sluice.server.http import read_json_body
from sluice.server.render import error_response
from sluice.server.services import Services
from sluice.server.wire import Request, Response
from sluice.store.base import StoreUnavailable
from sluice.store.keys import new_key
from sluice.store.records import GROUP_BY_VALUES, KeyRecord

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


def key_view(key: KeyRecord) -> dict[str, Any]:
    """A key as shown to people and scripts: never the secret, never the hash."""
    return {
        "id": key.id, "prefix": key.prefix, "team": key.team, "user": key.user, "name": key.name,
        "models": list(key.models) if key.models is not None else None,
        "created_at": _iso(key.created_at), "revoked_at": _iso(key.revoked_at) if key.revoked_at else None,
        "rpm": key.rpm, "tpm": key.tpm, "concurrent": key.concurrent, "budget_usd": key.budget_usd,
        "budget_period": key.budget_period,
    }  # fmt: skip


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


class KeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    team: str
    user: str | None = None
    name: str | None = None
    models: list[str] | None = None
    rpm: Annotated[int, msgspec.Meta(gt=0)] | None = None
    tpm: Annotated[int, msgspec.Meta(gt=0)] | None = None
    concurrent: Annotated[int, msgspec.Meta(gt=0)] | None = None
    budget_usd: Annotated[float, msgspec.Meta(ge=0)] | None = None
    budget_period: Literal["daily", "weekly", "monthly"] | None = None


def with_key_limits(record: KeyRecord, spec: KeyCreate) -> KeyRecord:
    return dataclasses.replace(
        record, rpm=spec.rpm, tpm=spec.tpm, concurrent=spec.concurrent, budget_usd=spec.budget_usd,
        budget_period=spec.budget_period or ("monthly" if spec.budget_usd is not None else None),
    )  # fmt: skip


def validate_key_request(svc_models: Any, teams: Any, team: str, models: list[str] | None) -> None:
    if team not in teams:
        raise BadRequest(f"unknown team '{team}': teams are declared in the policy file", param="team")
    for m in models or []:
        if m not in svc_models:
            raise BadRequest(f"unknown model '{m}'", param="models")


@routes.post("/admin/keys")
async def create_key(request: Request) -> Response:
    svc = request.services
    try:
        _check_admin(request)
        data = decode_json_object(await read_json_body(request, limit=65536))
        try:
            body = msgspec.convert(data, KeyCreate)
        except msgspec.ValidationError as exc:
            raise BadRequest(f"invalid key request: {exc}") from None
        validate_key_request(svc.config.models, svc.config.teams, body.team, body.models)
        secret, record = new_key(
            svc.hmac_key, team=body.team, user=body.user, name=body.name,
            models=tuple(body.models) if body.models is not None else None,
        )  # fmt: skip
        record = with_key_limits(record, body)
        await svc.store.create_key(record)
        await svc.keys.reload(force=True)
    except SluiceError as exc:
        return error_response(exc, None)
    except StoreUnavailable:
        return _json({"error": {"message": "the store is unavailable", "type": "server_error"}}, 503)
    return _json({**key_view(record), "key": secret}, status=201)


@routes.get("/admin/keys")
async def list_keys(request: Request) -> Response:
    svc = request.services
    try:
        _check_admin(request)
        keys = await svc.store.list_keys(include_revoked=True)
    except SluiceError as exc:
        return error_response(exc, None)
    return _json({"object": "list", "data": [key_view(k) for k in keys]})


@routes.delete("/admin/keys/{key_id}")
async def revoke_key(request: Request) -> Response:
    svc = request.services
    key_id = request.param("key_id")
    try:
        _check_admin(request)
        if not await svc.store.revoke_key(key_id, time.time()):
            raise NotFound(f"no active key with id '{key_id}'")
        svc.keys.forget(key_id)
    except SluiceError as exc:
        return error_response(exc, None)
    return _json({"id": key_id, "revoked": True})


def parse_since(value: str | None) -> float | None:
    """``2026-11-01``, an ISO timestamp, or ``7d`` / ``24h`` ago."""
    if not value:
        return None
    units = {"d": 86400, "h": 3600, "m": 60}
    if value[-1] in units and value[:-1].isdigit():
        return time.time() - int(value[:-1]) * units[value[-1]]
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"invalid 'since': {value!r} (use 2026-11-01, an ISO time, or 7d / 24h)") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


@routes.get("/admin/spend")
async def spend(request: Request) -> Response:
    svc = request.services
    group_by = request.query.get("group_by", "team")
    try:
        _check_admin(request)
        if group_by not in GROUP_BY_VALUES:
            raise BadRequest(f"group_by must be one of {', '.join(GROUP_BY_VALUES)}", param="group_by")
        since = parse_since(request.query.get("since"))
        rows = await svc.store.spend(group_by, since)
    except SluiceError as exc:
        return error_response(exc, None)
    data = [
        {"group": r.group, "requests": r.requests, "errors": r.errors, "prompt_tokens": r.prompt_tokens,
         "completion_tokens": r.completion_tokens, "cost_usd": round(r.cost_usd, 8),
         "saved_usd": round(r.saved_usd, 8)}
        for r in rows
    ]  # fmt: skip
    return _json({"group_by": group_by, "since": since, "data": data})


@routes.get("/admin/budgets")
async def budgets(request: Request) -> Response:
    """Each budget's limit, spend, reservations and reset time in the current period."""
    svc = request.services
    try:
        _check_admin(request)
        rows = await svc.limiter.budget_report(await budget_levels(svc))
    except SluiceError as exc:
        return error_response(exc, None)
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
    try:
        _check_admin(request)
    except SluiceError as exc:
        return error_response(exc, None)
    return _json(svc.router.health_view())


@routes.get("/healthz")
async def healthz(request: Request) -> Response:
    return _json({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: Request) -> Response:
    svc = request.services
    if svc.draining:
        return _json({"status": "draining"}, 503)
    try:
        await asyncio.wait_for(svc.store.ping(), timeout=2.0)
    except (StoreUnavailable, TimeoutError) as exc:
        return _json({"status": "unavailable", "store": str(exc) or "timeout"}, 503)
    return _json({"status": "ready", "store": "ok", "pending_records": svc.writer.pending})
