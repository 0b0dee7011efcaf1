"""OpenAI-compatible endpoints: chat completions (streamed or not), embeddings, models."""

from __future__ import annotations

import contextlib
import logging

from sluice.errors import NotFound, ServiceUnavailable, SluiceError
from sluice.schema import openai as dialect
from sluice.schema.chat import ChatRequest, ChatResponse
from sluice.schema.context import ChunkStream, Dialect, Endpoint, RequestContext
from sluice.schema.embeddings import EmbeddingResponse, with_encoding
from sluice.schema.sse import DONE
from sluice.server.dispatch import RouteTable
from sluice.server.http import header_tags, new_request_id, presented_key, read_json_body
from sluice.server.render import base_headers, error_response, json_response
from sluice.server.services import Services
from sluice.server.wire import Request, Response, StreamResponse

log = logging.getLogger("sluice.server")
routes = RouteTable()

_SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}


def new_context(request: Request, endpoint: Endpoint, dialect: Dialect = "openai") -> RequestContext:
    return RequestContext(
        request_id=new_request_id(), dialect=dialect, endpoint=endpoint, presented_key=presented_key(request),
        cache_control=request.headers.get("cache-control"),
        cache_threshold=request.headers.get("x-sluice-cache-threshold"),
    )  # fmt: skip


def identify(request: Request, ctx: RequestContext, chat: ChatRequest) -> None:
    """Who and what the request is for: model, end user, tags, task."""
    ctx.chat = chat
    ctx.requested_model = chat.model
    principal_user = ctx.principal.user if ctx.principal else None
    ctx.user = request.headers.get("x-sluice-user") or chat.user or principal_user
    ctx.tags = header_tags(request, chat.metadata)
    ctx.task = request.headers.get("x-sluice-task") or (chat.metadata or {}).get("task")


async def admit(svc: Services, request: Request, ctx: RequestContext) -> bytes:
    """Authenticate (before reading a byte of the body), then read it."""
    if svc.draining:
        raise ServiceUnavailable("the gateway is shutting down")
    ctx.principal = await svc.keys.authenticate(ctx.presented_key)
    return await read_json_body(request)


@routes.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response | StreamResponse:
    svc = request.services
    ctx = new_context(request, "chat")
    try:
        body = await admit(svc, request, ctx)
        identify(request, ctx, dialect.parse_chat_request(body))
    except SluiceError as exc:
        svc.accounting.fail(ctx, exc)
        return error_response(exc, ctx)
    try:
        result = await svc.pipeline(ctx)
    except SluiceError as exc:
        return error_response(exc, ctx)
    if isinstance(result, ChunkStream):
        return await _stream(request, ctx, result)
    assert isinstance(result, ChatResponse)
    return json_response(dialect.render_response(result), ctx)


async def _stream(request: Request, ctx: RequestContext, stream: ChunkStream) -> Response | StreamResponse:
    chat = ctx.chat
    assert chat is not None
    include_usage = bool(chat.stream_options and chat.stream_options.include_usage)
    resp = StreamResponse(status=200, headers={**_SSE_HEADERS, **base_headers(ctx)})
    try:
        await resp.prepare(request)
        async for chunk in stream.chunks:
            if chunk.usage is not None and not include_usage:
                if not chunk.choices:
                    continue  # the usage-only chunk the gateway asked for on its own account
                chunk.usage = None
            await resp.write(b"data: " + dialect.render_chunk(chunk) + b"\n\n")
        await resp.write(DONE)
    except SluiceError as exc:
        # Headers are gone: say it in the stream, and never send [DONE] so it cannot look complete.
        await _write_quietly(resp, b"data: " + dialect.error_body(exc) + b"\n\n")
    except ConnectionError:
        pass  # the caller went away; the metered wrapper records it as 499
    finally:
        await stream.aclose()
    return resp


async def _write_quietly(resp: StreamResponse, data: bytes) -> None:
    with contextlib.suppress(ConnectionError):
        await resp.write(data)


@routes.post("/v1/embeddings")
async def embeddings(request: Request) -> Response | StreamResponse:
    svc = request.services
    ctx = new_context(request, "embeddings")
    try:
        body = await admit(svc, request, ctx)
        emb = dialect.parse_embedding_request(body)
        ctx.embedding = emb
        ctx.requested_model = emb.model
        ctx.user = (
            request.headers.get("x-sluice-user")
            or emb.user
            or (ctx.principal.user if ctx.principal else None)
        )
        ctx.tags = header_tags(request, None)
    except SluiceError as exc:
        svc.accounting.fail(ctx, exc)
        return error_response(exc, ctx)
    try:
        result = await svc.pipeline(ctx)
    except SluiceError as exc:
        return error_response(exc, ctx)
    assert isinstance(result, EmbeddingResponse)
    result = with_encoding(result, emb.encoding_format or "float")
    return json_response(dialect.encode(result), ctx)


def _model_object(svc: Services, name: str) -> dict[str, object]:
    cfg = svc.config.models[name]
    return {"id": name, "object": "model", "created": svc.started_at, "owned_by": cfg.owned_by}


@routes.get("/v1/models")
async def list_models(request: Request) -> Response:
    svc = request.services
    ctx = new_context(request, "chat")
    try:
        principal = await svc.keys.authenticate(ctx.presented_key)
    except SluiceError as exc:
        return error_response(exc, ctx)
    data = [_model_object(svc, m) for m in svc.config.models if principal.may_use(m)]
    return json_response(dialect.encode({"object": "list", "data": data}), ctx)


@routes.get("/v1/models/{model:.+}")
async def get_model(request: Request) -> Response:
    svc = request.services
    ctx = new_context(request, "chat")
    name = request.param("model")
    try:
        principal = await svc.keys.authenticate(ctx.presented_key)
        if name not in svc.config.models or not principal.may_use(name):
            raise NotFound(
                f"model '{name}' does not exist or this key may not use it", code="model_not_found"
            )
    except SluiceError as exc:
        return error_response(exc, ctx)
    return json_response(dialect.encode(_model_object(svc, name)), ctx)
