"""OpenAI-compatible endpoints: chat completions (streamed or not), embeddings, models."""

from __future__ import annotations

from sluice.config.residency import parse_request_requirements
from sluice.errors import NotFound, SluiceError
from sluice.schema import openai as wire
from sluice.schema.context import RequestContext
from sluice.schema.embeddings import EmbeddingResponse, with_encoding
from sluice.server.chat import ChatHandler, admit
from sluice.server.dispatch import RouteTable
from sluice.server.http import header_tags
from sluice.server.openai_dialect import OPENAI
from sluice.server.render import json_response
from sluice.server.services import Services
from sluice.server.wire import Request, Response


async def embeddings(request: Request, ctx: RequestContext) -> Response:
    svc = request.services
    try:
        body = await admit(svc, request, ctx)
        emb = wire.parse_embedding_request(body)
        ctx.embedding = emb
        ctx.requested_model = emb.model
        ctx.user = (
            request.headers.get("x-sluice-user")
            or emb.user
            or (ctx.principal.user if ctx.principal else None)
        )
        ctx.tags = header_tags(request, None)
        ctx.require = parse_request_requirements(request.headers.get("x-sluice-require"))
    except SluiceError as exc:
        svc.accounting.fail(ctx, exc)  # refused before the pipeline: recorded here
        raise
    result = await svc.pipeline(ctx)
    assert isinstance(result, EmbeddingResponse)
    result = with_encoding(result, emb.encoding_format or "float")
    return json_response(wire.encode(result), ctx)


def _model_object(svc: Services, name: str) -> dict[str, object]:
    cfg = svc.config.models[name]
    return {"id": name, "object": "model", "created": svc.started_at, "owned_by": cfg.owned_by}


async def list_models(request: Request, ctx: RequestContext) -> Response:
    svc = request.services
    principal = await svc.keys.authenticate(ctx.presented_key)
    data = [_model_object(svc, m) for m in svc.config.models if principal.may_use(m)]
    return json_response(wire.encode({"object": "list", "data": data}), ctx)


async def get_model(request: Request, ctx: RequestContext) -> Response:
    svc = request.services
    name = request.param("model")
    principal = await svc.keys.authenticate(ctx.presented_key)
    if name not in svc.config.models or not principal.may_use(name):
        raise NotFound(f"model '{name}' does not exist or this key may not use it", code="model_not_found")
    return json_response(wire.encode(_model_object(svc, name)), ctx)


routes = RouteTable(OPENAI)
routes.api("POST", "/v1/chat/completions", ChatHandler(OPENAI))
routes.api("POST", "/v1/embeddings", embeddings, endpoint="embeddings")
routes.api("GET", "/v1/models", list_models)
routes.api("GET", "/v1/models/{model:.+}", get_model)
