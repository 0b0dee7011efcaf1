"""Anthropic-compatible endpoints: ``POST /v1/messages`` (plain and streamed) and
``POST /v1/messages/count_tokens``, answering in Anthropic's format whatever provider serves."""

from __future__ import annotations

import contextlib

from sluice.errors import SluiceError
from sluice.schema import anthropic_render as render
from sluice.schema.anthropic_ingress import parse_messages_request
from sluice.schema.chat import ChatResponse
from sluice.schema.context import ChunkStream, RequestContext
from sluice.schema.openai import decode_json_object, encode
from sluice.server.dispatch import RouteTable
from sluice.server.openai_routes import admit, identify, new_context
from sluice.server.render import base_headers, error_response, json_response
from sluice.server.wire import Request, Response, StreamResponse

routes = RouteTable()

_SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}


@routes.post("/v1/messages")
async def messages(request: Request) -> Response | StreamResponse:
    svc = request.services
    ctx = new_context(request, "chat", "anthropic")
    try:
        body = await admit(svc, request, ctx)
        identify(request, ctx, parse_messages_request(body))
    except SluiceError as exc:
        svc.accounting.fail(ctx, exc)
        return error_response(exc, ctx, render.error_body)
    try:
        result = await svc.pipeline(ctx)
    except SluiceError as exc:
        return error_response(exc, ctx, render.error_body)
    if isinstance(result, ChunkStream):
        return await _stream(request, ctx, result)
    assert isinstance(result, ChatResponse)
    return json_response(render.render_message(result, ctx.requested_model), ctx)


async def _stream(request: Request, ctx: RequestContext, stream: ChunkStream) -> Response | StreamResponse:
    encoder = render.AnthropicStreamEncoder(ctx.requested_model)
    resp = StreamResponse(status=200, headers={**_SSE_HEADERS, **base_headers(ctx)})
    try:
        await resp.prepare(request)
        async for chunk in stream.chunks:
            data = encoder.feed(chunk)
            if data:
                await resp.write(data)
        await resp.write(encoder.finish())
    except SluiceError as exc:
        # An error event and no message_stop: the stream cannot look complete.
        with contextlib.suppress(ConnectionError):
            await resp.write(render.stream_error_event(exc))
    except ConnectionError:
        pass  # the caller went away; accounting records it as 499
    finally:
        await stream.aclose()
    return resp


@routes.post("/v1/messages/count_tokens")
async def count_tokens(request: Request) -> Response:
    """An estimate for any backend (o200k, or the model's own OpenAI tokenizer where it has one);
    ``x-sluice-token-count`` says which."""
    svc = request.services
    ctx = new_context(request, "chat", "anthropic")
    try:
        body = await admit(svc, request, ctx)
        chat = parse_messages_request(_with_max_tokens(body))
        count = await svc.tokens.count_chat_async(chat)
    except SluiceError as exc:
        return error_response(exc, ctx, render.error_body)
    resp = json_response(encode({"input_tokens": count.tokens}), ctx)
    resp.headers["x-sluice-token-count"] = "exact" if count.exact else "estimate"
    return resp


def _with_max_tokens(body: bytes) -> bytes:
    """count_tokens bodies carry no max_tokens; the parser requires one."""
    data = decode_json_object(body)
    data.setdefault("max_tokens", 1)
    return encode(data)
