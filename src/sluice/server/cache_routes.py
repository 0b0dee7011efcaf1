"""``/admin/cache``: the response cache's counters and contents, and clearing it.

``GET /admin/cache[?route=R&team=T]`` — entries and bytes held (every replica's, with Redis) and
this replica's hits, misses, bypasses and writes. ``DELETE /admin/cache[?route=R&team=T]`` — drop
the entries of a route, a team (its key- and team-scoped entries), both, or all.
"""

from __future__ import annotations

from sluice.errors import BadRequest, ServiceUnavailable, SluiceError
from sluice.server.admin_routes import _check_admin, _json
from sluice.server.dispatch import RouteTable
from sluice.server.render import error_response
from sluice.server.services import Services
from sluice.server.wire import Request, Response

routes = RouteTable()


def _filters(request: Request) -> tuple[str | None, str | None]:
    svc: Services = request.services
    route = request.query.get("route") or None
    team = request.query.get("team") or None
    if route is not None and route not in {r.name for r in svc.config.routes}:
        raise BadRequest(f"unknown route '{route}'", param="route")
    if team is not None and team not in svc.config.teams:
        raise BadRequest(f"unknown team '{team}'", param="team")
    if svc.cache is None:
        raise ServiceUnavailable("the response cache is not running")
    return route, team


@routes.get("/admin/cache")
async def cache_stats(request: Request) -> Response:
    try:
        _check_admin(request)
        route, team = _filters(request)
        assert request.services.cache is not None
        view = await request.services.cache.stats(route, team)
    except SluiceError as exc:
        return error_response(exc, None)
    return _json(view)


@routes.delete("/admin/cache")
async def cache_clear(request: Request) -> Response:
    try:
        _check_admin(request)
        route, team = _filters(request)
        assert request.services.cache is not None
        cleared = await request.services.cache.clear(route, team)
    except SluiceError as exc:
        return error_response(exc, None)
    return _json({"route": route, "team": team, "cleared": cleared})
