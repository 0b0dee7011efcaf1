"""Admin API routes added with roles and the audit trail: changing a key's limits
(``PATCH /admin/keys/{key_id}``) and reading the audit trail (``GET /admin/audit``)."""

from __future__ import annotations

import msgspec

from sluice.errors import BadRequest
from sluice.schema.openai import decode_json_object, encode
from sluice.server import audit_log
from sluice.server.admin_routes import scoped_key
from sluice.server.authz import authorize, team_scope
from sluice.server.dispatch import RouteTable
from sluice.server.http import read_json_body
from sluice.server.wire import Request, Response
from sluice.store.audit import AUDIT_SELECT, entry_from_row
from sluice.store.keys import KeyLimits, apply_limits
from sluice.store.views import key_view, parse_since

routes = RouteTable()


async def change_limits(request: Request) -> Response:
    svc = request.services
    key_id = request.param("key_id")
    admin = await authorize(request, "write")
    key = await scoped_key(request, admin, key_id)
    data = decode_json_object(await read_json_body(request, limit=4096))
    try:
        change = msgspec.convert(data, KeyLimits)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"invalid key limits: {exc}") from None
    if key.revoked_at is not None:
        raise BadRequest(f"key '{key_id}' is revoked: its limits cannot change")
    updated = apply_limits(key, change)
    if not await svc.store.update_key(updated):
        raise BadRequest(f"key '{key_id}' is revoked: its limits cannot change")
    await svc.keys.reload(force=True)
    before, after = audit_log.limits_view(key_view(key)), audit_log.limits_view(key_view(updated))
    await audit_log.record(request, admin, "key.limits_changed", key_id, key.team, before, after)
    return Response(200, encode(key_view(updated)))


routes.add("PATCH", "/admin/keys/{key_id}", change_limits)

#: The most entries one page of the audit trail holds.
AUDIT_PAGE = 500


@routes.get("/admin/audit")
async def audit(request: Request) -> Response:
    """Newest first; ``since``, ``limit`` (≤ 500) and ``before`` (an entry id, for the next page).
    A team-scoped caller sees its teams' entries only."""
    scope = team_scope(request, await authorize(request))
    q = request.query
    since = parse_since(q.get("since")) or 0.0
    try:
        limit = min(max(int(q.get("limit", "100")), 1), AUDIT_PAGE)
        before = int(q["before"]) if "before" in q else None
    except ValueError:
        raise BadRequest("limit and before must be integers") from None
    sql = AUDIT_SELECT + " WHERE ts >= ?"
    params: list[object] = [since]
    if before is not None:
        sql, params = sql + " AND id < ?", [*params, before]
    if scope is not None:
        sql += f" AND team IN ({', '.join('?' for _ in scope)})"
        params.extend(sorted(scope))
    rows = await request.services.store.fetch(sql + " ORDER BY id DESC LIMIT ?", [*params, limit])
    entries = [entry_from_row(r).view() for r in rows]
    nxt = entries[-1]["id"] if len(entries) == limit else None
    return Response(200, encode({"object": "list", "data": entries, "next_before": nxt}))
