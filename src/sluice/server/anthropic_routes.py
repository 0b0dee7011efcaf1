"""Anthropic-compatible endpoints: ``POST /v1/messages`` (plain and streamed) and
``POST /v1/messages/count_tokens``, answering in Anthropic's format whatever provider serves."""

from __future__ import annotations

from sluice.schema.anthropic_ingress import parse_messages_request
from sluice.schema.context import RequestContext
from sluice.schema.openai import decode_json_object, encode
from sluice.server.anthropic_dialect import ANTHROPIC
from sluice.server.chat import ChatHandler, admit
from sluice.server.dispatch import RouteTable
from sluice.server.render import json_response
from sluice.server.wire import Request, Response


async def count_tokens(request: Request, ctx: RequestContext) -> Response:
    """An estimate for any backend (o200k, or the model's own OpenAI tokenizer where it has one);
    ``x-sluice-token-count`` says which."""
    svc = request.services
    body = await admit(svc, request, ctx)
    chat = parse_messages_request(_with_max_tokens(body))
    count = await svc.tokens.count_chat_async(chat)
    resp = json_response(encode({"input_tokens": count.tokens}), ctx)
    resp.headers["x-sluice-token-count"] = "exact" if count.exact else "estimate"
    return resp


def _with_max_tokens(body: bytes) -> bytes:
    """count_tokens bodies carry no max_tokens; the parser requires one."""
    data = decode_json_object(body)
    data.setdefault("max_tokens", 1)
    return encode(data)


routes = RouteTable(ANTHROPIC)
routes.api("POST", "/v1/messages", ChatHandler(ANTHROPIC))
routes.api("POST", "/v1/messages/count_tokens", count_tokens)
