"""The Router: the pipeline's terminal. It picks the route, orders the targets, and runs the
attempt loop (``loop.py``) for chat (plain or streamed) and embeddings.

Entry points:

* :meth:`Router.select` — a middleware placed before quotas: matches ``routes:`` and sets
  ``ctx.route``, ``ctx.route_reason`` and ``ctx.routed_model`` (so route rate limits apply).
* :meth:`Router.chat` / :meth:`Router.embed` — the terminal handlers (they route the request
  themselves if ``select`` did not run).
* :meth:`Router.health_view` — breakers, moving averages, in-flight counts, retry budget.
* :meth:`Router.aclose` — let shadow calls finish at shutdown.

A provider-account limit hook (:class:`~sluice.routing.attempt.AttemptGuard`) is passed as
``guard``: it admits every upstream attempt and is settled when the attempt ends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from sluice.config.model import Config, ProviderConfig, TargetConfig
from sluice.config.routing import RetryConfig
from sluice.errors import NotFound, SluiceError
from sluice.pricing import PriceBook, cost
from sluice.providers.base import ChatAdapter, Target
from sluice.routing.adaptive import AdaptiveBook
from sluice.routing.attempt import AttemptGuard
from sluice.routing.calls import Call, ChatCall, EmbedCall, StreamCall
from sluice.routing.health import HealthBoard
from sluice.routing.loop import AttemptLoop, LoopEnv
from sluice.routing.residency import Residency
from sluice.routing.retry import RetryBudget
from sluice.routing.routes import NO_MATCH, Facts, Plan, RouteTable
from sluice.routing.shadow import ShadowRunner, ShadowWatch
from sluice.routing.strategies import Freshness, Option, Shape, make_option, order, shape_of
from sluice.schema.chat import ChatRequest, ChatResponse, Usage
from sluice.schema.context import CallNext, ChunkStream, RequestContext, Result
from sluice.schema.embeddings import EmbeddingResponse
from sluice.transport.client import Transport

T = TypeVar("T")
_PLAIN = Shape(prompt_tokens=0, output_tokens=0)
_STREAMED = Shape(prompt_tokens=0, output_tokens=0, stream=True)


@dataclass(frozen=True, slots=True)
class RouterHooks:
    """Injected for tests: the clock, the sleep between retries, randomness; and the shadow sink."""

    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rand: Callable[[], float] = random.random
    #: Receives each finished shadow call's context (app wiring: ``accounting.finish``).
    shadow_sink: Callable[[RequestContext], None] | None = None
    #: The previous router's breakers and latencies, carried over a policy reload.
    health: HealthBoard | None = None


class Router:
    def __init__(
        self,
        config: Config,
        adapters: Mapping[str, ChatAdapter],
        transport: Transport,
        *,
        providers: Mapping[str, ProviderConfig] | None = None,
        prices: PriceBook | None = None,
        guard: AttemptGuard | None = None,
        hooks: RouterHooks | None = None,
    ) -> None:
        hooks = hooks or RouterHooks()
        routing = config.routing
        self.config = config
        self._adapters = adapters
        self._transport = transport
        self._prices = prices or PriceBook.load(config.prices)
        self.table = RouteTable(config.routes, config.models, routing, config.server.request_timeout_s)
        self.health = hooks.health or HealthBoard(
            routing.breaker, routing.latency_alpha, hooks.clock, max_age_s=routing.latency_max_age_s
        )
        self.residency = Residency(config)
        self.adaptive = AdaptiveBook(config)
        self.budget = RetryBudget(routing.retry_budget)
        self._env = LoopEnv(
            self.health, self.budget, dict(providers or config.providers), hooks.clock, hooks.sleep,
            hooks.rand, guard,
        )  # fmt: skip
        # Shadow calls keep breakers of their own: a failing candidate must never open the breaker
        # (or skew the latency estimates) that the primary traffic relies on.
        self.shadow_health = HealthBoard(routing.breaker, routing.latency_alpha, hooks.clock)
        self._shadow_env = dataclasses.replace(self._env, budget=None, health=self.shadow_health)
        self._options = {name: tuple(self._option(t) for t in m.targets) for name, m in config.models.items()}
        self._strategies = {name: m.strategy for name, m in config.models.items()}
        self._shadow_plans: dict[str, Plan] = {}
        self.shadows = ShadowRunner(self._shadow_call, hooks.shadow_sink or _drop, self.cost_of, hooks.rand)

    def _option(self, t: TargetConfig) -> Option:
        target = Target(t.provider, t.model, t.weight if t.weight is not None else 1.0, t.timeout_s)
        return make_option(t, self._prices, self._provider_type(t.provider), self.health.get(target))

    def _provider_type(self, provider: str | None) -> str | None:
        adapter = self._adapters.get(provider) if provider else None
        return adapter.type if adapter is not None else None

    def cost_of(self, model: str | None, provider: str | None, usage: Usage | None) -> float | None:
        if model is None or usage is None:
            return None
        price = self._prices.lookup(model, self._provider_type(provider))
        return float(cost(usage, price)) if price is not None else None

    # ------------------------------------------------------------------ routing

    def targets(self, model: str) -> tuple[Target, ...]:
        options = self._options.get(model)
        if options is None:
            raise NotFound(
                f"model '{model}' does not exist on this gateway", param="model", code="model_not_found"
            )
        return tuple(o.target for o in options)

    def route(self, ctx: RequestContext) -> Plan:
        """Choose the route and model once per request; the plan itself is cached per (route, model)."""
        if ctx.routed_model is None and not self.table.routes:
            ctx.route, ctx.routed_model, ctx.route_reason = None, ctx.requested_model, NO_MATCH
        elif ctx.routed_model is None:
            p = ctx.principal
            facts = Facts(
                team=p.team if p else None, key=p.key_id if p else None, user=ctx.user,
                model=ctx.requested_model, task=ctx.task, tags=ctx.tags,
            )  # fmt: skip
            ctx.route, ctx.routed_model, ctx.route_reason = self.table.choose(facts, ctx.chat)
        plan = self.table.plan(ctx.route, ctx.routed_model)
        if not plan.models:
            self.targets(ctx.routed_model)  # raises NotFound
        return plan

    async def select(self, ctx: RequestContext, call_next: CallNext) -> Result:
        """Middleware: route before the quotas run, so a route's rate limit applies."""
        self.route(ctx)
        return await call_next(ctx)

    def candidates(
        self, plan: Plan, req: ChatRequest | None, ctx: RequestContext | None = None
    ) -> list[Option]:
        """Every target of the plan's models, each model's ordered by its strategy, without repeats,
        and only those meeting the request's residency requirements (``ctx``; raises if none does).
        The request's size is estimated only when a strategy needs it (``cheapest``)."""
        out: list[Option] = []
        seen: set[tuple[str, str]] = set()
        rand = self._env.rand
        shape = _STREAMED if req is not None and req.stream else _PLAIN
        for model in plan.models:
            strategy = self._strategies[model]
            if strategy == "cheapest" and req is not None and shape.prompt_tokens == 0:
                shape = shape_of(req)
            fresh = self._freshness() if strategy == "least_latency" else None
            if strategy == "adaptive":
                ordered, why = self.adaptive.order(model, self._options[model])
                if ctx is not None:
                    ctx.route_reason = f"{ctx.route_reason}; {why}" if ctx.route_reason else why
            else:
                ordered = order(strategy, self._options[model], shape, rand, fresh)
            for opt in ordered:
                key = (opt.target.provider, opt.target.model)
                if key not in seen:
                    seen.add(key)
                    out.append(opt)
        reqs = self.residency.of(ctx) if ctx is not None else ()
        if not reqs or ctx is None:
            return out
        return self.residency.allowed(out, reqs, ctx)

    def _freshness(self) -> Freshness:
        r = self.config.routing
        return Freshness(r.latency_refresh, r.latency_max_age_s, self._env.clock())

    # ------------------------------------------------------------------ serving

    async def chat(self, ctx: RequestContext) -> ChatResponse | ChunkStream:
        req = ctx.chat
        assert req is not None
        plan = self.route(ctx)
        options = self.candidates(plan, req, ctx)  # before the shadow starts: a refusal mirrors nothing
        watch = self.shadows.start(ctx, plan.shadow) if plan.shadow is not None else None
        call: Call[ChatResponse | ChunkStream]
        if req.stream:
            call = StreamCall(
                self._adapters, self._transport, req,
                first_token_s=plan.first_token_timeout_s, on_end=watch.stream_ended if watch else None,
            )  # fmt: skip
        else:
            call = ChatCall(self._adapters, self._transport, req)
        try:
            result: ChatResponse | ChunkStream = await self._run(self._env, ctx, plan, call, options)
        except BaseException as exc:
            if watch is not None:
                watch.failed(exc.kind if isinstance(exc, SluiceError) else "cancelled")
            raise
        if watch is not None and isinstance(result, ChatResponse):
            watch.answered(result)
        return result

    async def embed(self, ctx: RequestContext) -> EmbeddingResponse:
        req = ctx.embedding
        assert req is not None
        plan = self.route(ctx)
        call = EmbedCall(self._adapters, self._transport, req)
        return await self._run(self._env, ctx, plan, call, self.candidates(plan, None, ctx))

    async def _run(self, env: LoopEnv, ctx: RequestContext, plan: Plan, call: Call[T], options: list[Option]) -> T:  # fmt: skip
        budget = env.budget
        if budget is not None:
            budget.enter()
        try:
            return await AttemptLoop(env, ctx, plan, call).run(options)
        finally:
            if budget is not None:
                budget.leave()

    async def _shadow_call(self, sctx: RequestContext) -> ChatResponse:
        assert sctx.chat is not None
        model = sctx.requested_model
        plan = self._shadow_plans.get(model)
        if plan is None:
            base = self.table.plan(None, model)
            one = RetryConfig(max_attempts=1, retries=0)
            plan = dataclasses.replace(base, models=(model,), shadow=None, retry=one)
            self._shadow_plans[model] = plan
        call = ChatCall(self._adapters, self._transport, sctx.chat)
        return await self._run(self._shadow_env, sctx, plan, call, self.candidates(plan, sctx.chat, sctx))

    # ------------------------------------------------------------------ operations

    def health_view(self) -> dict[str, object]:
        return {"targets": self.health.view(), "retry_budget": self.budget.view(),
                "shadow_in_flight": len(self.shadows.tasks), "shadow_targets": self.shadow_health.view(),
                "adaptive": [self.adaptive.view(m, self._options[m]) for m in self.adaptive.models]}  # fmt: skip

    async def aclose(self, timeout_s: float = 5.0) -> None:
        await self.shadows.aclose(timeout_s)


def _drop(ctx: RequestContext) -> None:
    return None


__all__ = ["Router", "RouterHooks", "ShadowWatch"]
