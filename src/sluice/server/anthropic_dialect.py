"""The Anthropic Messages dialect: ``/v1/messages`` and everything under it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sluice.errors import SluiceError
from sluice.schema import anthropic_render as render
from sluice.schema.anthropic_ingress import parse_messages_request
from sluice.schema.chat import ChatRequest, ChatResponse
from sluice.schema.context import Dialect as DialectName
from sluice.schema.context import RequestContext

if TYPE_CHECKING:
    from sluice.server.wire import Request


class AnthropicDialect:
    name: DialectName = "anthropic"
    prefixes: tuple[str, ...] = ("/v1/messages",)

    def error_body(self, exc: SluiceError) -> bytes:
        return render.error_body(exc)

    async def parse_chat(self, request: Request, ctx: RequestContext, body: bytes) -> ChatRequest:
        return parse_messages_request(body)

    def render_response(self, resp: ChatResponse, ctx: RequestContext) -> bytes:
        return render.render_message(resp, ctx.requested_model)

    def stream_encoder(self, ctx: RequestContext) -> render.AnthropicStreamEncoder:
        return render.AnthropicStreamEncoder(ctx.requested_model)


ANTHROPIC = AnthropicDialect()
