"""Quotas middleware: rate limits and budgets at every level, reserved before the call, settled after.

For each request: count the prompt's tokens, reserve ``prompt + output reservation`` tokens and the
worst-case cost at every level that applies (route, team, key, end user) in one atomic step, put
``x-ratelimit-*`` on the response, call the rest of the pipeline, then settle to the reported usage
and real cost. A stream is settled when it ends however it ends, and is stopped with
``finish_reason: "length"`` if its output would pass what its budgets can still cover.

Provider-account limits are admitted per upstream attempt by routing through
:meth:`Quotas.admit_provider` / :meth:`Quotas.settle_provider`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from sluice.config.limits import LimitsConfig, RateLimitConfig
from sluice.errors import BadRequest
from sluice.limits import Level, Limiter, Ticket
from sluice.limits.catalog import ModelCatalog
from sluice.limits.model import LevelLimits
from sluice.limits.tokens import TokenCounter
from sluice.pipeline.quota_stream import MeteredStream
from sluice.pricing import Price, cost, worst_case_cost
from sluice.schema.chat import ChatChunk, ChatRequest, ChatResponse, Usage
from sluice.schema.context import CallNext, ChunkStream, Principal, RequestContext, Result
from sluice.schema.embeddings import EmbeddingRequest, EmbeddingResponse

_ZERO = Decimal(0)
_MAX_CACHED = 100_000
KeyLimits = Callable[[Principal], LevelLimits | None]


def principal_limits(principal: Principal) -> LevelLimits | None:
    """Default: ``Principal.limits`` (a :class:`LevelLimits`), when the store provides it."""
    limits = getattr(principal, "limits", None)
    return limits if isinstance(limits, LevelLimits) else None


@dataclass(frozen=True, slots=True)
class Plan:
    """What one request reserves."""

    prompt_tokens: int
    output_tokens: int
    #: The output reservation is a real bound (max_tokens, or the model's maximum for a non-stream).
    output_bounded: bool
    price: Price | None

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens

    @property
    def worst_cost(self) -> Decimal:
        if self.price is None:
            return _ZERO
        return worst_case_cost(self.prompt_tokens, self.output_tokens, self.price)


class Quotas:
    def __init__(
        self,
        limiter: Limiter,
        counter: TokenCounter,
        catalog: ModelCatalog,
        *,
        teams: Mapping[str, LevelLimits] | None = None,
        routes: Mapping[str, RateLimitConfig] | None = None,
        key_limits: KeyLimits = principal_limits,
        max_n: int = 8,
    ) -> None:
        self.limiter = limiter
        self._max_n = max_n
        self.counter = counter
        self.catalog = catalog
        self._config: LimitsConfig = limiter.config
        self._teams = teams or {}
        self._routes = routes or {}
        self._key_limits = key_limits
        self._users = self._config.users
        self._plans: dict[str, Plan] = {}
        self._provider_tpm = any(r.tpm is not None for r in self._config.providers.values())
        # Levels are immutable: made once per route, per principal and per end user, not per request.
        self._route_levels: dict[str, Level] = {
            name: Level("route", name, rate=rate) for name, rate in self._routes.items()
        }
        self._principal_levels: dict[str, tuple[Principal, tuple[Level, ...]]] = {}
        self._user_levels: dict[str, Level] = {}

    # ------------------------------------------------------------------ levels

    def levels(self, ctx: RequestContext) -> list[Level]:
        out: list[Level] = []
        if ctx.route is not None:
            route = self._route_levels.get(ctx.route)
            if route is not None:
                out.append(route)
        p = ctx.principal
        if p is None:
            return out
        out.extend(self._levels_of(p))
        user = ctx.user or (ctx.chat.user if ctx.chat is not None else None)
        users = self._users
        if user and users is not None and (users.rate_limit is not None or users.budget is not None):
            name = f"{p.team}/{user}"
            level = self._user_levels.get(name)
            if level is None:
                if len(self._user_levels) >= _MAX_CACHED:
                    self._user_levels.clear()
                level = self._user_levels[name] = Level(
                    "user",
                    name,
                    rate=users.rate_limit,
                    budget=users.budget,
                    display=f"{user} (team {p.team})",
                )
            out.append(level)
        return out

    def _levels_of(self, p: Principal) -> tuple[Level, ...]:
        """The team's and the key's levels; remade when the key cache hands out a new principal
        (a reload that changed the key's limits)."""
        cached = self._principal_levels.get(p.key_id)
        if cached is not None and cached[0] is p:
            return cached[1]
        levels: list[Level] = []
        team = self._teams.get(p.team)
        if team is not None and not team.empty:
            levels.append(Level("team", p.team, rate=team.rate, budget=team.budget))
        key = self._key_limits(p)
        if key is not None and not key.empty:
            levels.append(Level("key", p.key_id, rate=key.rate, budget=key.budget, display=p.name))
        if len(self._principal_levels) >= _MAX_CACHED:
            self._principal_levels.clear()
        made = tuple(levels)
        self._principal_levels[p.key_id] = (p, made)
        return made

    # ------------------------------------------------------------------ planning

    async def plan_chat(self, chat: ChatRequest, model: str) -> Plan:
        count = await self.counter.count_chat_async(chat, self.catalog.tokenizer_model(model))
        price = self.catalog.reserve_price(model)
        asked = chat.output_limit()
        model_max = price.max_output_tokens if price is not None else None
        default = self._config.default_output_tokens
        n = chat.n or 1  # n completions, each up to the output limit
        if asked is not None:
            return Plan(count.tokens, asked * n, True, price)
        if chat.stream:  # reserve a step; the stream's reservation grows as it goes
            step = min(default, model_max) if model_max else default
            return Plan(count.tokens, step * n, model_max is not None and model_max <= default, price)
        return Plan(count.tokens, (model_max or default) * n, model_max is not None, price)

    def plan_embedding(self, req: EmbeddingRequest, model: str) -> Plan:
        data = req.input
        if isinstance(data, str):
            tokens = self.counter.count_inputs([data], self.catalog.tokenizer_model(model)).tokens
        elif data and isinstance(data[0], str):
            texts = [t for t in data if isinstance(t, str)]
            tokens = self.counter.count_inputs(texts, self.catalog.tokenizer_model(model)).tokens
        elif data and isinstance(data[0], list):
            tokens = sum(len(x) for x in data if isinstance(x, list))
        else:
            tokens = len(data)
        return Plan(tokens, 0, True, self.catalog.reserve_price(model))

    def planned_tokens(self, ctx: RequestContext) -> int:
        """Tokens this request reserved (for routing's provider admission); 0 if unknown."""
        plan = self._plans.get(ctx.request_id)
        return plan.tokens if plan is not None else 0

    # ------------------------------------------------------------------ middleware

    async def __call__(self, ctx: RequestContext, call_next: CallNext) -> Result:
        if ctx.chat is not None and ctx.chat.n is not None and ctx.chat.n > self._max_n:
            raise BadRequest(f"'n' may be at most {self._max_n} (server.max_n)", param="n")
        levels = self.levels(ctx)
        model = ctx.requested_model
        if not self._provider_tpm and not any(_needs_tokens(lv) for lv in levels):
            plan = _NO_PLAN  # nothing counts tokens or money: skip the tokenizer
        elif ctx.chat is not None:
            plan = await self.plan_chat(ctx.chat, model or ctx.chat.model)
        elif ctx.embedding is not None:
            plan = self.plan_embedding(ctx.embedding, model or ctx.embedding.model)
        else:
            return await call_next(ctx)
        ticket = await self.limiter.admit(levels, tokens=plan.tokens, cost=plan.worst_cost)
        ctx.response_headers.update(ticket.headers)
        self._plans[ctx.request_id] = plan
        try:
            result = await call_next(ctx)
        except BaseException:
            self._plans.pop(ctx.request_id, None)
            self.limiter.release(ticket)
            raise
        if ctx.cache is not None:  # answered by the cache: one request, no tokens, no cost
            self._plans.pop(ctx.request_id, None)
            self.limiter.settle(ticket, tokens=0, cost=_ZERO)
            return result
        if isinstance(result, ChunkStream):
            result.chunks = self._meter(ctx, result, ticket, plan)
            return result
        self._plans.pop(ctx.request_id, None)
        usage = _usage_of(result) or ctx.usage
        if usage is None:
            usage = Usage(prompt_tokens=plan.prompt_tokens, total_tokens=plan.prompt_tokens)
        spent = self._cost(ctx, usage, plan) if ticket.has_budget else _ZERO
        self.limiter.settle(ticket, tokens=usage.total_tokens, cost=spent)
        return result

    def _meter(self, ctx: RequestContext, stream: ChunkStream, ticket: Ticket, plan: Plan) -> MeteredStream:
        def finish(usage: Usage, cut: bool) -> None:
            self._plans.pop(ctx.request_id, None)
            self.limiter.settle(ticket, tokens=usage.total_tokens, cost=self._cost(ctx, usage, plan))

        def on_stop(note: str) -> None:
            ctx.note = f"{ctx.note}; {note}" if ctx.note else note

        watch = ticket.has_budget and not plan.output_bounded and plan.price is not None
        chat = ctx.chat
        want_usage = bool(chat and chat.stream_options and chat.stream_options.include_usage)
        return MeteredStream(
            stream.chunks,
            limiter=self.limiter,
            ticket=ticket,
            prompt_tokens=plan.prompt_tokens,
            finish=finish,
            on_stop=on_stop,
            price=plan.price,
            room_tokens=plan.output_tokens if watch else None,
            step_tokens=self._config.default_output_tokens,
            want_usage=want_usage,
        )

    def _cost(self, ctx: RequestContext, usage: Usage, plan: Plan) -> Decimal:
        price = None
        if ctx.served_model is not None:
            price = self.catalog.served_price(ctx.served_model, ctx.provider)
        if price is None:
            price = plan.price
        return cost(usage, price) if price is not None else _ZERO

    # ------------------------------------------------------------------ provider accounts (routing)

    async def admit_provider(self, provider: str, tokens: int) -> Ticket:
        """Admit one upstream attempt against the provider account's limits (raises RateLimited)."""
        rate = self._config.providers.get(provider)
        levels: Sequence[Level] = [Level("provider", provider, rate=rate)] if rate is not None else ()
        return await self.limiter.admit(levels, tokens=tokens)

    def settle_provider(self, ticket: Ticket, usage: Usage | None) -> None:
        """After the attempt (answer, error, or end of its stream); idempotent."""
        self.limiter.settle(ticket, tokens=usage.total_tokens if usage is not None else 0)

    def meter_provider_stream(
        self, chunks: AsyncIterator[ChatChunk], ticket: Ticket, prompt_tokens: int = 0
    ) -> AsyncIterator[ChatChunk]:
        """Wrap an attempt's stream so its provider ticket is settled however the stream ends."""
        if ticket.admission is None:
            return chunks
        return MeteredStream(
            chunks,
            limiter=self.limiter,
            ticket=ticket,
            prompt_tokens=prompt_tokens,
            finish=lambda usage, cut: self.settle_provider(ticket, usage),
            on_stop=lambda note: None,
        )

    # The routing.router.AttemptGuard protocol: provider-account limits, per upstream attempt.

    async def admit_attempt(self, ctx: RequestContext, provider: str) -> Ticket | None:
        if provider not in self._config.providers:
            return None
        return await self.admit_provider(provider, self.planned_tokens(ctx))

    def settle_attempt(self, ticket: Ticket | None, usage: Usage | None) -> None:
        if ticket is not None:
            self.settle_provider(ticket, usage)


_NO_PLAN = Plan(0, 0, True, None)


def _needs_tokens(level: Level) -> bool:
    return level.budget is not None or (level.rate is not None and level.rate.tpm is not None)


def _usage_of(result: Result) -> Usage | None:
    if isinstance(result, ChatResponse):
        return result.usage
    if isinstance(result, EmbeddingResponse):
        u = result.usage
        return Usage(prompt_tokens=u.prompt_tokens, total_tokens=u.total_tokens or u.prompt_tokens)
    return None
