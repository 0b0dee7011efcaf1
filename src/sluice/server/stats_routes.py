"""``GET /admin/stats``: latency tails and error rates from the request log (admin key)."""

from __future__ import annotations

from sluice.errors import BadRequest, SluiceError
from sluice.schema.openai import encode
from sluice.server.admin_routes import _check_admin
from sluice.server.dispatch import RouteTable
from sluice.server.render import error_response
from sluice.server.wire import Request, Response
from sluice.store.stats import STATS_BY_VALUES
from sluice.store.views import parse_since

routes = RouteTable()


@routes.get("/admin/stats")
async def stats(request: Request) -> Response:
    """``?by=model|provider|route|team`` (default model), ``?since=24h`` (default: everything)."""
    svc = request.services
    by = request.query.get("by", "model")
    try:
        _check_admin(request)
        if by not in STATS_BY_VALUES:
            raise BadRequest(f"by must be one of {', '.join(STATS_BY_VALUES)}", param="by")
        since = parse_since(request.query.get("since"))
        rows = await svc.store.latency_stats(by, since)
    except SluiceError as exc:
        return error_response(exc, None)
    return Response(200, encode({"by": by, "since": since, "data": [r.to_dict(by) for r in rows]}))
