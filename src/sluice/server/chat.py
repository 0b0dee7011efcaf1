"""The one chat handler and the one stream writer, shared by every dialect.

The handler authenticates before reading a byte of the body, lets the dialect parse the body into
the canonical request, runs the pipeline, and has the dialect render the answer or encode the
stream. It renders no error: what it raises, the dispatcher answers in the path's dialect.
"""

from __future__ import annotations

import contextlib

from sluice.config.residency import parse_request_requirements
from sluice.errors import SluiceError
from sluice.schema.chat import ChatRequest, ChatResponse
from sluice.schema.context import ChunkStream, RequestContext
from sluice.server.dialect import Dialect, StreamEncoder
from sluice.server.http import header_tags, read_json_body
from sluice.server.render import base_headers, json_response
from sluice.server.services import Services
from sluice.server.wire import AnyResponse, Request, StreamResponse

SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}


async def admit(svc: Services, request: Request, ctx: RequestContext) -> bytes:
    """Authenticate (before reading a byte of the body), then read it. A request that arrives
    while the gateway drains is still answered (with ``connection: close``): it reached this
    replica before the listener closed, and a load balancer cannot resend a refused POST."""
    ctx.principal = await svc.keys.authenticate(ctx.presented_key)
    return await read_json_body(request)


def identify(request: Request, ctx: RequestContext, chat: ChatRequest) -> None:
    """Who and what the request is for: model, end user, tags, task."""
    ctx.chat = chat
    ctx.requested_model = chat.model
    principal_user = ctx.principal.user if ctx.principal else None
    ctx.user = request.headers.get("x-sluice-user") or chat.user or principal_user
    ctx.tags = header_tags(request, chat.metadata)
    ctx.task = request.headers.get("x-sluice-task") or (chat.metadata or {}).get("task")
    ctx.require = parse_request_requirements(
        request.headers.get("x-sluice-require") or (chat.metadata or {}).get("require")
    )


class ChatHandler:
    """``POST`` of a dialect's chat endpoint: admit → parse → pipeline → render or stream."""

    __slots__ = ("dialect",)

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect

    async def __call__(self, request: Request, ctx: RequestContext) -> AnyResponse:
        svc = request.services
        try:
            body = await admit(svc, request, ctx)
            identify(request, ctx, await self.dialect.parse_chat(request, ctx, body))
        except SluiceError as exc:
            svc.accounting.fail(ctx, exc)  # refused before the pipeline: recorded here
            raise
        result = await svc.pipeline(ctx)
        if isinstance(result, ChunkStream):
            return await write_stream(request, ctx, result, self.dialect.stream_encoder(ctx))
        assert isinstance(result, ChatResponse)
        return json_response(self.dialect.render_response(result, ctx), ctx)


async def write_stream(
    request: Request, ctx: RequestContext, stream: ChunkStream, encoder: StreamEncoder
) -> StreamResponse:
    """Relay a chunk stream as the encoder's events, chunk by chunk as they arrive."""
    resp = StreamResponse(status=200, headers={**SSE_HEADERS, **base_headers(ctx)})
    try:
        await resp.prepare(request)
        async for chunk in stream.chunks:
            data = encoder.feed(chunk)
            if data:
                await resp.write(data)
        await resp.write(encoder.finish())
    except SluiceError as exc:
        # The head is gone: the encoder says it in the stream, without the end that would make
        # the stream look complete.
        with contextlib.suppress(ConnectionError):
            await resp.write(encoder.error(exc))
    except ConnectionError:
        pass  # the caller went away; the metered wrapper records it as 499
    finally:
        await stream.aclose()
    return resp
