"""``POST /v1/feedback`` (a gateway key rates one of its team's answers) and ``GET /admin/feedback``.

A request id of another team answers 404, exactly like an unknown one (same path, same delay), so
ids never leak. The rated request's record may still be on its way to the store (records are
written in batches): the handler flushes the queue and looks again for up to half a second before
it concludes the request is unknown.
"""

from __future__ import annotations

import asyncio
import json
import time

from sluice.errors import BadRequest, NotFound, SluiceError
from sluice.routing.feedback import GROUP_BY, negative, summarise, validate
from sluice.schema.openai import encode
from sluice.server.admin_routes import _check_admin
from sluice.server.dispatch import RouteTable
from sluice.server.http import presented_key, read_json_body
from sluice.server.render import error_response
from sluice.server.services import Services
from sluice.server.wire import Request, Response
from sluice.store.feedback import FeedbackRow, RequestFacts
from sluice.store.views import parse_since

routes = RouteTable()
_MAX_BODY = 16 * 1024
_LOOKUPS = 5
_LOOKUP_WAIT_S = 0.5


@routes.post("/v1/feedback")
async def feedback(request: Request) -> Response:
    svc = request.services
    try:
        principal = await svc.keys.authenticate(presented_key(request))
        report, value = validate(svc.config.feedback, await read_json_body(request, _MAX_BODY))
        facts = await _visible_request(svc, report.request_id, principal.team)
        tags = list(dict.fromkeys([*json.loads(facts.tags or "[]"), *(report.tags or [])]))
        row = FeedbackRow(
            id=f"{report.request_id}:{report.metric}", ts=time.time(), request_id=report.request_id,
            team=principal.team, key_id=principal.key_id, metric=report.metric, value=value,
            comment=report.comment, tags=json.dumps(tags), route=facts.route, model=facts.model,
            provider=facts.provider, target_model=facts.target_model,
        )  # fmt: skip
        await svc.store.insert_feedback(row)
        svc.router.adaptive.observe(row)  # counts at once here; other replicas read it from the store
        metric = svc.config.feedback.metrics[report.metric]
        if svc.cache is not None and negative(metric, value):
            await svc.cache.evict_answer(row.request_id)  # a bad answer is never served again
    except SluiceError as exc:
        return error_response(exc, None)
    body = {"object": "feedback", "request_id": row.request_id, "metric": row.metric, "value": report.value,
            "route": row.route, "model": row.model, "target": f"{row.provider}/{row.target_model}"}  # fmt: skip
    return Response(200, encode(body))


async def _visible_request(svc: Services, request_id: str, team: str) -> RequestFacts:
    """The rated request, if it belongs to ``team``. Its record may still be on its way to the
    store (written in batches, possibly by a batch in flight), so it is looked for a few times
    over ``_LOOKUP_WAIT_S``. An unknown id and another team's id take the same path and the same
    time to the same 404, so neither whether an id exists nor whose it is can be learnt."""
    for attempt in range(_LOOKUPS):
        if svc.writer.pending:
            await svc.writer.flush()
        facts = await svc.store.request_facts(request_id)
        if facts is not None and facts.team == team:
            return facts
        if attempt + 1 < _LOOKUPS:
            await asyncio.sleep(_LOOKUP_WAIT_S / _LOOKUPS)
    raise NotFound(f"no request '{request_id}' for this key's team", param="request_id")


@routes.get("/admin/feedback")
async def feedback_report(request: Request) -> Response:
    """Counts, means and 95% intervals: ``?metric=helpful&by=route|model|target|tag&since=7d``."""
    svc = request.services
    try:
        _check_admin(request)
        by = request.query.get("by", "metric")
        if by not in GROUP_BY:
            raise BadRequest(f"'by' must be one of {', '.join(GROUP_BY)}", param="by")
        rows = await svc.store.feedback_rows(
            request.query.get("metric"), parse_since(request.query.get("since"))
        )
    except SluiceError as exc:
        return error_response(exc, None)
    return Response(200, encode({"by": by, "groups": summarise(rows, svc.config.feedback, by)}))
