"""The OpenAI Responses dialect: ``/v1/responses`` and everything under it, errors in OpenAI's shape.

A Responses request carries what the chat handler does not know about: the Response object's
frame (its id, the settings it echoes), the conversation so far (``previous_response_id``) and
whether to keep the answer (``store``). :meth:`ResponsesDialect.parse_chat` puts them in
``ctx.dialect_state`` as a :class:`ResponsesTurn`; rendering and the stream encoder read it back and
keep the answer in the response store once it is complete (a plain answer when it is rendered, a
stream when its terminal event is made, before it is written, so a ``GET`` right after
``response.completed`` finds it). A failed or cut stream is not kept.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

from sluice.errors import NotFound, ServiceUnavailable, SluiceError
from sluice.schema import openai as wire
from sluice.schema.chat import ChatRequest, ChatResponse, Message
from sluice.schema.context import Dialect as DialectName
from sluice.schema.context import RequestContext
from sluice.schema.responses import ResponsesRequest, input_messages, parse_responses_request, to_chat_request
from sluice.schema.responses_render import ResponseFrame, new_response_id, render_response
from sluice.schema.responses_stream import ResponsesStreamEncoder
from sluice.store.base import StoreUnavailable
from sluice.store.responses import ResponseStore, StoredResponse

if TYPE_CHECKING:
    from sluice.server.services import Services
    from sluice.server.wire import Request

log = logging.getLogger("sluice.server")
_messages = msgspec.json.Decoder(list[Message]).decode


@dataclass(slots=True)
class ResponsesTurn:
    """One Responses request's own state (``ctx.dialect_state``)."""

    frame: ResponseFrame
    #: The conversation up to this answer: the stored history, then this request's input.
    conversation: list[Message]
    team: str
    #: Where the answer is kept; None when the request says ``store: false``.
    store: ResponseStore | None

    def keep(self, body: bytes, answer: list[Message]) -> None:
        if self.store is not None:
            convo = wire.encode(self.conversation + answer)
            self.store.put(StoredResponse(self.frame.id, self.team, time.time(), body, convo))


def response_store(svc: Services) -> ResponseStore:
    if svc.responses is None:
        raise ServiceUnavailable("stored responses are not available on this gateway")
    return svc.responses


async def lookup(svc: Services, ctx: RequestContext, response_id: str) -> StoredResponse | None:
    """The stored response of the caller's team with this id, if any."""
    assert ctx.principal is not None
    try:
        return await response_store(svc).get(response_id, ctx.principal.team)
    except StoreUnavailable as exc:
        log.error("response store unavailable: %s", exc)
        raise ServiceUnavailable("the gateway's response store is unavailable") from None


class StoringStreamEncoder(ResponsesStreamEncoder):
    """The Responses event stream, keeping the finished Response once its terminal event is made."""

    __slots__ = ("_turn",)

    def __init__(self, turn: ResponsesTurn) -> None:
        super().__init__(turn.frame)
        self._turn = turn

    def finish(self) -> bytes:
        tail = super().finish()
        if self.final is not None:
            self._turn.keep(wire.encode(self.final), self.conversation())
        return tail


class ResponsesDialect:
    name: DialectName = "responses"
    prefixes: tuple[str, ...] = ("/v1/responses",)

    def error_body(self, exc: SluiceError) -> bytes:
        return wire.error_body(exc)

    async def parse_chat(self, request: Request, ctx: RequestContext, body: bytes) -> ChatRequest:
        req = parse_responses_request(body)
        turn = input_messages(req)
        svc = request.services
        history = await _history(svc, ctx, req)
        chat = to_chat_request(req, history, turn)
        assert ctx.principal is not None
        store = response_store(svc) if req.stored else None  # refused before anything is spent
        frame = ResponseFrame(req, new_response_id())
        ctx.dialect_state = ResponsesTurn(frame, history + turn, ctx.principal.team, store)
        return chat

    def render_response(self, resp: ChatResponse, ctx: RequestContext) -> bytes:
        turn = _turn(ctx)
        obj, answer = render_response(resp, turn.frame)
        body = wire.encode(obj)
        turn.keep(body, answer)
        return body

    def stream_encoder(self, ctx: RequestContext) -> StoringStreamEncoder:
        return StoringStreamEncoder(_turn(ctx))


def _turn(ctx: RequestContext) -> ResponsesTurn:
    state = ctx.dialect_state
    assert isinstance(state, ResponsesTurn), "parse_chat sets the turn before the pipeline runs"
    return state


async def _history(svc: Services, ctx: RequestContext, req: ResponsesRequest) -> list[Message]:
    """The conversation ``previous_response_id`` names: its input and output, in order."""
    if req.previous_response_id is None:
        return []
    row = await lookup(svc, ctx, req.previous_response_id)
    if row is None:
        raise NotFound(
            f"previous response with id '{req.previous_response_id}' not found",
            param="previous_response_id", code="previous_response_not_found",
        )  # fmt: skip
    return _messages(row.conversation)


RESPONSES = ResponsesDialect()
