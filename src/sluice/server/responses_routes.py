"""The OpenAI Responses API: ``POST /v1/responses`` (plain and streamed), ``GET`` and ``DELETE
/v1/responses/{id}``. ``POST`` is the shared chat handler with the Responses dialect: it runs
through the same pipeline as chat (endpoint ``chat``), so limits, budgets, routing and the request
log apply alike, and any backend can answer. Errors are rendered by the dispatcher."""

from __future__ import annotations

import logging
from urllib.parse import parse_qs

from sluice.errors import BadRequest, NotFound, ServiceUnavailable
from sluice.schema.context import RequestContext
from sluice.schema.openai import encode
from sluice.server.chat import ChatHandler
from sluice.server.dispatch import RouteTable
from sluice.server.render import json_response
from sluice.server.responses_dialect import RESPONSES, lookup, response_store
from sluice.server.wire import Request, Response
from sluice.store.base import StoreUnavailable

log = logging.getLogger("sluice.server")


async def get_response(request: Request, ctx: RequestContext) -> Response:
    svc = request.services
    ctx.principal = await svc.keys.authenticate(ctx.presented_key)
    response_id = request.param("response_id")
    if parse_qs(request.query_string or "").get("stream", ["false"])[-1].lower() == "true":
        raise BadRequest("streaming a stored response again is not supported", param="stream")
    row = await lookup(svc, ctx, response_id)
    if row is None:
        raise NotFound(f"response with id '{response_id}' not found", param="response_id")
    return json_response(row.body, ctx)


async def delete_response(request: Request, ctx: RequestContext) -> Response:
    svc = request.services
    principal = ctx.principal = await svc.keys.authenticate(ctx.presented_key)
    response_id = request.param("response_id")
    try:
        deleted = await response_store(svc).delete(response_id, principal.team)
    except StoreUnavailable as exc:
        log.error("response store unavailable: %s", exc)
        raise ServiceUnavailable("the gateway's response store is unavailable") from None
    if not deleted:
        raise NotFound(f"response with id '{response_id}' not found", param="response_id")
    return json_response(encode({"id": response_id, "object": "response.deleted", "deleted": True}), ctx)


routes = RouteTable(RESPONSES)
routes.api("POST", "/v1/responses", ChatHandler(RESPONSES))
routes.api("GET", "/v1/responses/{response_id}", get_response)
routes.api("DELETE", "/v1/responses/{response_id}", delete_response)
