"""The OpenAI Responses API: ``POST /v1/responses`` (plain and streamed), ``GET`` and ``DELETE
/v1/responses/{id}``. Requests run through the same pipeline as chat (endpoint ``chat``), so
limits, budgets, routing and the request log apply alike, and any backend can answer."""

from __future__ import annotations

import contextlib
import logging
import time
from urllib.parse import parse_qs

import msgspec

from sluice.errors import BadRequest, NotFound, ServiceUnavailable, SluiceError
from sluice.schema.chat import ChatResponse, Message
from sluice.schema.context import ChunkStream, RequestContext
from sluice.schema.openai import encode
from sluice.schema.responses import ResponsesRequest, input_messages, parse_responses_request, to_chat_request
from sluice.schema.responses_render import ResponseFrame, new_response_id, render_response
from sluice.schema.responses_stream import ResponsesStreamEncoder
from sluice.server.dispatch import RouteTable
from sluice.server.openai_routes import admit, identify, new_context
from sluice.server.render import base_headers, error_response, json_response
from sluice.server.services import Services
from sluice.server.wire import Request, Response, StreamResponse
from sluice.store.base import StoreUnavailable
from sluice.store.responses import ResponseStore, StoredResponse

log = logging.getLogger("sluice.server")
routes = RouteTable()

_SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
_messages = msgspec.json.Decoder(list[Message]).decode


@routes.post("/v1/responses")
async def create_response(request: Request) -> Response | StreamResponse:
    svc = request.services
    ctx = new_context(request, "chat")
    try:
        body = await admit(svc, request, ctx)
        wire = parse_responses_request(body)
        turn = input_messages(wire)
        history = await _history(svc, ctx, wire)
        identify(request, ctx, to_chat_request(wire, history, turn))
    except SluiceError as exc:
        svc.accounting.fail(ctx, exc)
        return error_response(exc, ctx)
    frame = ResponseFrame(wire, new_response_id())
    try:
        result = await svc.pipeline(ctx)
    except SluiceError as exc:
        return error_response(exc, ctx)
    if isinstance(result, ChunkStream):
        return await _stream(request, ctx, result, frame, wire, history + turn)
    assert isinstance(result, ChatResponse)
    obj, answer = render_response(result, frame)
    payload = encode(obj)
    if wire.stored:
        _keep(svc, ctx, frame, payload, history + turn + answer)
    return json_response(payload, ctx)


async def _history(svc: Services, ctx: RequestContext, wire: ResponsesRequest) -> list[Message]:
    """The conversation ``previous_response_id`` names: its input and output, in order."""
    if wire.previous_response_id is None:
        return []
    row = await _lookup(svc, ctx, wire.previous_response_id)
    if row is None:
        raise NotFound(
            f"previous response with id '{wire.previous_response_id}' not found",
            param="previous_response_id", code="previous_response_not_found",
        )  # fmt: skip
    return _messages(row.conversation)


async def _lookup(svc: Services, ctx: RequestContext, response_id: str) -> StoredResponse | None:
    assert ctx.principal is not None
    try:
        return await _responses(svc).get(response_id, ctx.principal.team)
    except StoreUnavailable as exc:
        log.error("response store unavailable: %s", exc)
        raise ServiceUnavailable("the gateway's response store is unavailable") from None


def _responses(svc: Services) -> ResponseStore:
    if svc.responses is None:
        raise ServiceUnavailable("stored responses are not available on this gateway")
    return svc.responses


def _keep(
    svc: Services, ctx: RequestContext, frame: ResponseFrame, body: bytes, conversation: list[Message]
) -> None:
    assert ctx.principal is not None
    row = StoredResponse(frame.id, ctx.principal.team, time.time(), body, encode(conversation))
    _responses(svc).put(row)


async def _stream(
    request: Request,
    ctx: RequestContext,
    stream: ChunkStream,
    frame: ResponseFrame,
    wire: ResponsesRequest,
    conversation: list[Message],
) -> Response | StreamResponse:
    encoder = ResponsesStreamEncoder(frame)
    resp = StreamResponse(status=200, headers={**_SSE_HEADERS, **base_headers(ctx)})
    try:
        await resp.prepare(request)
        async for chunk in stream.chunks:
            data = encoder.feed(chunk)
            if data:
                await resp.write(data)
        tail = encoder.finish()
        if wire.stored and encoder.final is not None:
            _keep(request.services, ctx, frame, encode(encoder.final), conversation + encoder.conversation())
        await resp.write(tail)
    except SluiceError as exc:
        # Headers are gone: an error event and response.failed, never response.completed.
        with contextlib.suppress(ConnectionError):
            await resp.write(encoder.fail(exc))
    except ConnectionError:
        pass  # the caller went away; accounting records it as 499
    finally:
        await stream.aclose()
    return resp


async def _authenticated(request: Request) -> tuple[Services, RequestContext, str]:
    svc = request.services
    ctx = new_context(request, "chat")
    ctx.principal = await svc.keys.authenticate(ctx.presented_key)
    return svc, ctx, request.param("response_id")


@routes.get("/v1/responses/{response_id}")
async def get_response(request: Request) -> Response:
    ctx = None
    try:
        svc, ctx, response_id = await _authenticated(request)
        if parse_qs(request.query_string or "").get("stream", ["false"])[-1].lower() == "true":
            raise BadRequest("streaming a stored response again is not supported", param="stream")
        row = await _lookup(svc, ctx, response_id)
        if row is None:
            raise NotFound(f"response with id '{response_id}' not found", param="response_id")
    except SluiceError as exc:
        return error_response(exc, ctx)
    return json_response(row.body, ctx)


@routes.delete("/v1/responses/{response_id}")
async def delete_response(request: Request) -> Response:
    ctx = None
    try:
        svc, ctx, response_id = await _authenticated(request)
        assert ctx.principal is not None
        try:
            deleted = await _responses(svc).delete(response_id, ctx.principal.team)
        except StoreUnavailable as exc:
            log.error("response store unavailable: %s", exc)
            raise ServiceUnavailable("the gateway's response store is unavailable") from None
        if not deleted:
            raise NotFound(f"response with id '{response_id}' not found", param="response_id")
    except SluiceError as exc:
        return error_response(exc, ctx)
    return json_response(encode({"id": response_id, "object": "response.deleted", "deleted": True}), ctx)
