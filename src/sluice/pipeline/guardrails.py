"""The guardrails middleware: input checks before the cache and any upstream call; output checks
wrapping the answer, whole or streamed; the verdicts and (``logging.payloads``) the bodies for the
request record. A thin adapter over :mod:`sluice.guardrails`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Literal

from sluice.config.model import Config
from sluice.guardrails.engine import Guard, Plan, RequestState, build_guard, build_plan, payload_detectors
from sluice.guardrails.inbound import check_input
from sluice.guardrails.outbound import answer_text, check_answer, restore_answer, schema_problem
from sluice.guardrails.output_schema import SchemaChecker, requested_schema
from sluice.guardrails.payloads import PayloadLog
from sluice.guardrails.scanner import StreamScanner
from sluice.guardrails.texts import Slot, embedding_slots, request_slots
from sluice.guardrails.webhook import Post, WebhookCaller
from sluice.schema.chat import ChatChunk, ChatResponse
from sluice.schema.context import CallNext, ChunkStream, RequestContext, Result
from sluice.schema.upstream import UpstreamRequest
from sluice.transport.client import Deadline, Transport

HEADER = "x-sluice-guardrails"


def transport_post(transport: Transport) -> Post:
    """Guardrail services are called through the gateway's one network client."""

    async def post(
        name: str, url: str, headers: dict[str, str], body: bytes, timeout_s: float
    ) -> tuple[int, bytes]:
        req = UpstreamRequest(
            provider=f"guardrail:{name}", method="POST", url=url, headers=headers, body=body
        )
        resp = await transport.send(req, Deadline(total_s=timeout_s, first_byte_s=timeout_s))
        return resp.status, resp.body

    return post


class Guardrails:
    def __init__(self, config: Config, post: Post | None = None) -> None:
        guards = {name: build_guard(name, cfg) for name, cfg in config.guardrails.items()}
        default = config.routing.guardrails
        self._default = build_plan(default, guards)
        self._plans = {r.name: build_plan([*default, *r.guardrails], guards) for r in config.routes}
        mode = config.logging.payloads
        self._payloads = PayloadLog(mode, payload_detectors(guards.values())) if mode != "none" else None
        self._webhooks = WebhookCaller(post) if post is not None else None
        self._schemas = SchemaChecker()

    def plan(self, route: str | None) -> Plan:
        return self._plans.get(route, self._default) if route is not None else self._default

    async def middleware(self, ctx: RequestContext, call_next: CallNext) -> Result:
        plan = self.plan(ctx.route)
        if plan.empty and self._payloads is None:
            return await call_next(ctx)
        state = RequestState(plan)
        if plan.header:
            ctx.response_headers[HEADER] = plan.header
        texts = self._inbound(ctx, state)
        try:
            await check_input(state, texts, self._webhooks)
        finally:
            ctx.guardrails = state.encoded()
        result = await call_next(ctx)
        if isinstance(result, ChunkStream):
            if not plan.output_text and plan.output_schema is None and self._payloads is None:
                return result
            return ChunkStream(self._stream(ctx, state, result.chunks))
        if isinstance(result, ChatResponse):
            return await self._answer(ctx, state, result, call_next)
        return result

    def _inbound(self, ctx: RequestContext, state: RequestState) -> list[tuple[str, Slot]]:
        obj = ctx.chat if ctx.chat is not None else ctx.embedding
        if obj is None:
            return []
        if self._payloads is not None:
            ctx.request_body = self._payloads.body(obj, state.placeholders)  # before any rewrite
        return request_slots(ctx.chat) if ctx.chat is not None else embedding_slots(obj)  # type: ignore[arg-type]

    async def _answer(
        self, ctx: RequestContext, state: RequestState, resp: ChatResponse, call_next: CallNext
    ) -> Result:
        try:
            schema = state.plan.output_schema
            if schema is not None and ctx.chat is not None:
                resp = await self._schema_checked(ctx, state, schema, resp, call_next)
            check_answer(state, resp)
        finally:
            ctx.guardrails = state.encoded()
        payloads = self._payloads
        if payloads is not None and payloads.redacted:
            ctx.response_body = payloads.body(resp, state.placeholders)
        restore_answer(state, resp)
        if payloads is not None and not payloads.redacted:
            ctx.response_body = payloads.body(resp, state.placeholders)
        return resp

    async def _schema_checked(
        self, ctx: RequestContext, state: RequestState, guard: Guard, resp: ChatResponse, call_next: CallNext
    ) -> ChatResponse:
        assert ctx.chat is not None
        problem = schema_problem(self._schemas, ctx.chat, answer_text(resp))
        if problem is not None and guard.retry:
            state.record(guard.verdict("output", "retried", detail=problem))
            again = await call_next(ctx)
            if isinstance(again, ChatResponse):
                resp = again
                problem = schema_problem(self._schemas, ctx.chat, answer_text(resp))
        if problem is not None:
            if guard.action == "block":
                raise state.blocked(guard, "output", {"schema": 1}, problem)
            state.record(guard.verdict("output", "flagged", counts={"schema": 1}, detail=problem))
        return resp

    async def _stream(
        self, ctx: RequestContext, state: RequestState, chunks: AsyncIterator[ChatChunk]
    ) -> AsyncIterator[ChatChunk]:
        guard = state.plan.output_schema
        validate = None
        if guard is not None and ctx.chat is not None and requested_schema(ctx.chat) is not None:
            validate = self._stream_validator(ctx, state, guard)
        payloads = self._payloads
        capture: Literal["redacted", "restored"] | None = None
        if payloads is not None:
            capture = "redacted" if payloads.redacted else "restored"
        scanner = StreamScanner(state, state.plan.output_text, validate=validate, capture=capture)
        last: ChatChunk | None = None
        try:
            async for chunk in chunks:
                last = chunk
                for out in scanner.feed(chunk):
                    yield out
            for out in scanner.finish(last):
                yield out
        finally:
            scanner.verdicts()
            ctx.guardrails = state.encoded()
            if self._payloads is not None and scanner.sent is not None:
                ctx.response_body = self._payloads.streamed(scanner.sent, state.placeholders)
            closer = getattr(chunks, "aclose", None)
            if closer is not None:
                await closer()

    def _stream_validator(
        self, ctx: RequestContext, state: RequestState, guard: Guard
    ) -> Callable[[str], None]:
        chat = ctx.chat
        assert chat is not None

        def validate(text: str) -> None:
            problem = (
                schema_problem(self._schemas, chat, text) if text else "the answer is too long to validate"
            )
            if problem is None:
                return
            if guard.action == "block":
                raise state.blocked(guard, "output", {"schema": 1}, problem)
            state.record(guard.verdict("output", "flagged", counts={"schema": 1}, detail=problem))

        return validate
