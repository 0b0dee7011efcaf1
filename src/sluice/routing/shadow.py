"""Shadow traffic: mirror a share of a route's requests to a candidate model, and compare.

The shadow call is a background task started next to the real one: it never delays or changes the
caller's answer (a stream's shadow is sent as a plain request). It gets its own request record —
tagged ``shadow``, with ``shadow_of`` = the mirrored request's id and its own spend — and, once both
answers are in, the comparison (latency, tokens, cost, text similarity) is stored with it as JSON.
Shadow calls make one attempt, take no retry budget, and are capped per route (``max_in_flight``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import msgspec

from sluice.config.routing import ShadowConfig
from sluice.errors import SluiceError
from sluice.schema.chat import ChatResponse, Usage
from sluice.schema.context import RequestContext

log = logging.getLogger("sluice.routing")
_WORD = re.compile(r"\w+")
#: Similarity is computed on at most this many characters of each answer (keeps it under a millisecond).
_MAX_COMPARE_CHARS = 20_000
#: How long a shadow waits for the mirrored request's answer to be complete before giving up.
_PRIMARY_WAIT_S = 900.0

CostOf = Callable[[str | None, str | None, Usage | None], float | None]


@dataclass(slots=True)
class Outcome:
    model: str | None = None
    provider: str | None = None
    latency_ms: float = 0.0
    usage: Usage | None = None
    text: str = ""
    error: str | None = None
    #: The policy model the side was routed to (what the report groups by).
    routed: str | None = None


def similarity(a: str, b: str) -> float:
    """Cosine similarity of the two texts' word counts (case-insensitive): 1.0 = same words."""
    wa = Counter(_WORD.findall(a[:_MAX_COMPARE_CHARS].lower()))
    wb = Counter(_WORD.findall(b[:_MAX_COMPARE_CHARS].lower()))
    if not wa or not wb:
        return 1.0 if not wa and not wb else 0.0
    dot = sum(n * wb[w] for w, n in wa.items() if w in wb)
    norm = math.sqrt(sum(n * n for n in wa.values())) * math.sqrt(sum(n * n for n in wb.values()))
    return min(1.0, dot / norm)


def response_text(resp: ChatResponse) -> str:
    parts: list[str] = []
    for choice in resp.choices:
        msg = choice.message
        if msg.content:
            parts.append(msg.content)
        for tc in msg.tool_calls or ():
            parts.append(f"{tc.function.name} {tc.function.arguments}")
    return "\n".join(parts)


class ShadowWatch:
    """The mirrored request's outcome, reported once (by the router, or the relay of its stream)."""

    __slots__ = ("_ctx", "_started", "future")

    def __init__(self, ctx: RequestContext) -> None:
        self._ctx = ctx
        self._started = time.perf_counter()
        self.future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()

    def _report(self, text: str, usage: Usage | None, error: str | None) -> None:
        if self.future.done():
            return
        ctx = self._ctx
        ms = (time.perf_counter() - self._started) * 1000.0
        model, provider = ctx.served_model, ctx.provider
        if error is not None and model is None:
            model, provider = _failed_side(ctx, ctx.routed_model or ctx.requested_model)
        routed = ctx.routed_model or ctx.requested_model
        self.future.set_result(Outcome(model, provider, ms, usage, text, error, routed))

    def answered(self, resp: ChatResponse) -> None:
        self._report(response_text(resp), resp.usage, None)

    def failed(self, kind: str) -> None:
        self._report("", None, kind)

    def stream_ended(self, text: str, usage: Usage | None, kind: str | None) -> None:
        self._report(text, usage, kind)


ShadowCall = Callable[[RequestContext], Awaitable[ChatResponse]]


@dataclass(slots=True)
class ShadowRunner:
    call: ShadowCall
    sink: Callable[[RequestContext], None]
    cost_of: CostOf
    rand: Callable[[], float]
    in_flight: dict[str, int] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def start(self, ctx: RequestContext, cfg: ShadowConfig) -> ShadowWatch | None:
        """Mirror this request (maybe): returns the watch the router reports the answer to."""
        route = ctx.route or ""
        if ctx.chat is None or ctx.shadow_of is not None or self.rand() * 100.0 >= cfg.percent:
            return None
        if self.in_flight.get(route, 0) >= cfg.max_in_flight:
            return None
        watch = ShadowWatch(ctx)
        self.in_flight[route] = self.in_flight.get(route, 0) + 1
        task = asyncio.create_task(self._run(ctx, cfg, watch), name=f"sluice-shadow-{ctx.request_id}")
        self.tasks.add(task)
        task.add_done_callback(self._done(route))
        return watch

    def _done(self, route: str) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            self.tasks.discard(task)
            self.in_flight[route] -= 1

        return done

    async def _run(self, ctx: RequestContext, cfg: ShadowConfig, watch: ShadowWatch) -> None:
        sctx = shadow_context(ctx, cfg.model)
        started = time.perf_counter()
        shadow = Outcome(routed=cfg.model)
        try:
            resp = await self.call(sctx)
            sctx.usage = resp.usage
            shadow = Outcome(
                sctx.served_model, sctx.provider, 0.0, resp.usage, response_text(resp), routed=cfg.model
            )
        except SluiceError as exc:
            sctx.error, sctx.status = exc, exc.status
            shadow = Outcome(*_failed_side(sctx, cfg.model), error=exc.kind, routed=cfg.model)
        shadow.latency_ms = (time.perf_counter() - started) * 1000.0
        try:
            primary = await asyncio.wait_for(asyncio.shield(watch.future), _PRIMARY_WAIT_S)
        except TimeoutError:
            primary = Outcome(error="no answer to compare")
        sctx.comparison = msgspec.json.encode(self.compare(primary, shadow)).decode()
        try:
            self.sink(sctx)
        except Exception:  # a shadow must never hurt the gateway
            log.exception("shadow record for %s failed", ctx.request_id)

    def compare(self, primary: Outcome, shadow: Outcome) -> dict[str, object]:
        both_ok = primary.error is None and shadow.error is None
        return {
            "primary": self._side(primary),
            "shadow": self._side(shadow),
            "similarity": round(similarity(primary.text, shadow.text), 4) if both_ok else None,
        }

    def _side(self, o: Outcome) -> dict[str, object]:
        u = o.usage
        return {
            "model": o.model, "routed_model": o.routed, "provider": o.provider, "latency_ms": round(o.latency_ms, 3), "error": o.error,
            "prompt_tokens": u.prompt_tokens if u else None, "completion_tokens": u.completion_tokens if u else None,
            "cost_usd": self.cost_of(o.model, o.provider, u),
        }  # fmt: skip

    async def aclose(self, timeout_s: float) -> None:
        """Let shadow calls in flight finish (up to ``timeout_s``), then cancel the rest."""
        if not self.tasks:
            return
        _, pending = await asyncio.wait(set(self.tasks), timeout=timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


def shadow_context(ctx: RequestContext, model: str) -> RequestContext:
    chat = ctx.chat
    assert chat is not None
    req = msgspec.structs.replace(chat, model=model, stream=False, stream_options=None)
    return RequestContext(
        request_id=f"{ctx.request_id}-shadow", dialect=ctx.dialect, endpoint="chat", presented_key=None,
        chat=req, requested_model=model, user=ctx.user, tags=(*ctx.tags, "shadow"), task=ctx.task,
        principal=ctx.principal, route=ctx.route, route_reason=f"shadow of {ctx.request_id} (route '{ctx.route}')",
        routed_model=model, shadow_of=ctx.request_id, require=ctx.require,
    )  # fmt: skip


def _failed_side(sctx: RequestContext, model: str) -> tuple[str, str | None]:
    """The model and provider a failed shadow call is reported under: the target of its last
    attempt (the same names a successful call reports), or the shadow model when no attempt was
    made (circuit open, provider limit) — never None, so the report counts the error."""
    if sctx.attempts:
        last = sctx.attempts[-1]
        return last.model, last.provider
    return model, None
