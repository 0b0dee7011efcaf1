"""The OpenAI chat-completions dialect: also the dialect of every path no other dialect owns."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sluice.errors import SluiceError
from sluice.schema import openai as wire
from sluice.schema.chat import ChatRequest, ChatResponse
from sluice.schema.context import Dialect as DialectName
from sluice.schema.context import RequestContext

if TYPE_CHECKING:
    from sluice.server.wire import Request


class OpenAIDialect:
    name: DialectName = "openai"
    prefixes: tuple[str, ...] = ("/v1",)

    def error_body(self, exc: SluiceError) -> bytes:
        return wire.error_body(exc)

    async def parse_chat(self, request: Request, ctx: RequestContext, body: bytes) -> ChatRequest:
        return wire.parse_chat_request(body)

    def render_response(self, resp: ChatResponse, ctx: RequestContext) -> bytes:
        return wire.render_response(resp)

    def stream_encoder(self, ctx: RequestContext) -> wire.OpenAIStreamEncoder:
        chat = ctx.chat
        options = chat.stream_options if chat is not None else None
        return wire.OpenAIStreamEncoder(bool(options and options.include_usage))


OPENAI = OpenAIDialect()
