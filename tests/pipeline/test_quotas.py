"""The quotas middleware with a fake rest-of-pipeline: every path settles, counters end at zero."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from sluice.config.limits import BudgetConfig, LimitsConfig, RateLimitConfig, UserLimitsConfig
from sluice.errors import ProviderError, RateLimited
from sluice.limits import Level, Limiter, MemoryState
from sluice.limits.model import LevelLimits
from sluice.limits.tokens import TokenCounter
from sluice.pipeline.quotas import Quotas
from sluice.pricing import Price
from sluice.schema.chat import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    Message,
    ResponseMessage,
    StreamOptions,
    Usage,
)
from sluice.schema.context import ChunkStream, Principal, RequestContext

D = Decimal
PRICE = Price(input_per_token=D("0.000001"), output_per_token=D("0.00001"), max_output_tokens=8000)
COUNTER = TokenCounter()


class Catalog:
    def reserve_price(self, model: str) -> Price | None:
        return PRICE

    def served_price(self, model: str, provider: str | None) -> Price | None:
        return PRICE

    def tokenizer_model(self, model: str) -> str:
        return "gpt-4o"


def quotas(limiter: Limiter, *, team: LevelLimits | None = None, key: LevelLimits | None = None) -> Quotas:
    return Quotas(
        limiter,
        COUNTER,
        Catalog(),
        teams={"billing": team} if team else {},
        key_limits=lambda p: key,
        routes={"cheap": RateLimitConfig(rpm=1000)},
    )


def context(*, stream: bool = False, max_tokens: int | None = 100, user: str | None = None) -> RequestContext:
    chat = ChatRequest(
        model="m",
        messages=[Message(role="user", content="Say hello.")],
        stream=stream,
        max_tokens=max_tokens,
        stream_options=StreamOptions(include_usage=True) if stream else None,
    )
    return RequestContext(
        request_id=uuid.uuid4().hex,
        dialect="openai",
        endpoint="chat",
        presented_key=None,
        chat=chat,
        requested_model="m",
        user=user,
        principal=Principal("k_1", "billing", None, "ci-bot", None),
    )


def response(prompt: int = 12, completion: int = 30) -> ChatResponse:
    return ChatResponse(
        choices=[Choice(message=ResponseMessage(content="hello"), finish_reason="stop")],
        usage=Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion),
    )


class Upstream:
    """A fake streamed answer: n one-token chunks, finish, usage. Records whether it was closed."""

    def __init__(self, n: int = 20, delay: float = 0.0) -> None:
        self.n, self.delay, self.closed, self.finished = n, delay, False, False

    async def chunks(self) -> AsyncIterator[ChatChunk]:
        try:
            for _ in range(self.n):
                if self.delay:
                    await asyncio.sleep(self.delay)
                yield ChatChunk(id="c", choices=[ChunkChoice(delta=Delta(content="abcd"))])
            yield ChatChunk(id="c", choices=[ChunkChoice(delta=Delta(), finish_reason="stop")])
            yield ChatChunk(
                id="c",
                choices=[],
                usage=Usage(prompt_tokens=12, completion_tokens=self.n, total_tokens=12 + self.n),
            )
            self.finished = True
        finally:
            self.closed = True

    async def __call__(self, ctx: RequestContext) -> ChunkStream:
        return ChunkStream(self.chunks())


TEAM = LevelLimits(RateLimitConfig(rpm=1000, tpm=1_000_000, concurrent=1000), BudgetConfig(usd=D(100)))
TEAM_LEVEL = Level("team", "billing", rate=TEAM.rate, budget=TEAM.budget)


async def assert_idle(limiter: Limiter) -> None:
    await limiter.flush()
    assert await limiter.in_flight([TEAM_LEVEL]) == [0]
    [status] = await limiter.budget_report([TEAM_LEVEL])
    assert status.reserved_usd == 0


async def test_non_stream_settles_to_reported_usage(make_limiter):
    lim = make_limiter()
    q = quotas(lim, team=TEAM)

    async def upstream(ctx: RequestContext) -> ChatResponse:
        assert await lim.in_flight([TEAM_LEVEL]) == [1]
        return response(12, 30)

    ctx = context()
    await q(ctx, upstream)
    assert ctx.response_headers["x-ratelimit-limit-requests"] == "1000"
    assert ctx.response_headers["x-ratelimit-remaining-requests"] == "999"
    await assert_idle(lim)
    [status] = await lim.budget_report([TEAM_LEVEL])
    assert status.spent_usd == 12 * PRICE.input_per_token + 30 * PRICE.output_per_token


async def test_refusal_names_the_limit(make_limiter):
    key = LevelLimits(RateLimitConfig(rpm=1))
    q = quotas(make_limiter(), key=key)
    await q(context(), lambda ctx: asyncio.sleep(0, response()))
    with pytest.raises(RateLimited) as err:
        await q(context(), lambda ctx: asyncio.sleep(0, response()))
    assert "key ci-bot: 1 requests/min" in err.value.message
    assert err.value.headers["x-ratelimit-limit-requests"] == "1"


async def test_levels_include_route_team_key_user(make_limiter):
    users = LimitsConfig(users=UserLimitsConfig(rate_limit=RateLimitConfig(rpm=5)))
    q = Quotas(
        make_limiter(users),
        COUNTER,
        Catalog(),
        teams={"billing": TEAM},
        routes={"cheap": RateLimitConfig(rpm=9)},
        key_limits=lambda p: LevelLimits(budget=BudgetConfig(usd=D(1))),
    )
    ctx = context(user="alice")
    ctx.route = "cheap"
    assert [lv.label for lv in q.levels(ctx)] == [
        "route cheap",
        "team billing",
        "key ci-bot",
        "user alice (team billing)",
    ]


def test_levels_are_made_once_per_principal_and_remade_for_a_new_one():
    """Levels are cached per principal object: a key reload that changed the key's limits hands
    out a new principal, whose levels carry the new limits."""
    q = Quotas(
        Limiter(MemoryState(), LimitsConfig()),
        COUNTER,
        Catalog(),
        key_limits=lambda p: p.limits,
    )
    first = Principal("k_1", "billing", None, "ci-bot", None, LevelLimits(RateLimitConfig(rpm=5)))
    ctx = context()
    ctx.principal = first
    levels = q.levels(ctx)
    assert q.levels(ctx)[0] is levels[0]
    reloaded = Principal("k_1", "billing", None, "ci-bot", None, LevelLimits(RateLimitConfig(rpm=50)))
    ctx.principal = reloaded
    (key_level,) = q.levels(ctx)
    assert key_level.rate is not None and key_level.rate.rpm == 50


@pytest.mark.parametrize("exc", [ProviderError("server", "boom", provider="p"), asyncio.CancelledError()])
async def test_error_and_cancellation_release(make_limiter, exc):
    lim = make_limiter()
    q = quotas(lim, team=TEAM)

    async def failing(ctx: RequestContext) -> ChatResponse:
        raise exc

    with pytest.raises(type(exc)):
        await q(context(), failing)
    await assert_idle(lim)


async def test_stream_settles_at_the_end(make_limiter):
    lim = make_limiter()
    q = quotas(lim, team=TEAM)
    up = Upstream(20)
    stream = await q(context(stream=True), up)
    assert isinstance(stream, ChunkStream)
    assert await lim.in_flight([TEAM_LEVEL]) == [1]
    chunks = [c async for c in stream.chunks]
    assert len(chunks) == 22 and up.finished
    await assert_idle(lim)
    [status] = await lim.budget_report([TEAM_LEVEL])
    assert status.spent_usd == 12 * PRICE.input_per_token + 20 * PRICE.output_per_token


@pytest.mark.parametrize("after", [0, 5])
async def test_stream_closed_early_releases(make_limiter, after):
    lim = make_limiter()
    q = quotas(lim, team=TEAM)
    up = Upstream(20)
    stream = await q(context(stream=True), up)
    assert isinstance(stream, ChunkStream)
    for _ in range(after):
        await stream.chunks.__anext__()
    await stream.aclose()  # the client went away
    assert up.closed or after == 0
    await assert_idle(lim)
    [status] = await lim.budget_report([TEAM_LEVEL])
    assert status.spent_usd > 0  # the prompt (and what streamed) is paid for


async def test_stream_cancelled_mid_iteration_releases(make_limiter):
    lim = make_limiter()
    q = quotas(lim, team=TEAM)
    stream = await q(context(stream=True), Upstream(1000, delay=0.001))
    assert isinstance(stream, ChunkStream)

    async def consume() -> None:
        async for _ in stream.chunks:
            pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await stream.aclose()
    await assert_idle(lim)


async def test_stream_stopped_when_budget_runs_out(make_limiter):
    lim = make_limiter(LimitsConfig(default_output_tokens=10))
    # $0.0005 buys the prompt (~13 tokens at $1/M) and ~48 output tokens at $10/M.
    team = LevelLimits(None, BudgetConfig(usd=D("0.0005")))
    q = quotas(lim, team=team)
    ctx = context(stream=True, max_tokens=None)
    up = Upstream(200)
    stream = await q(ctx, up)
    assert isinstance(stream, ChunkStream)
    chunks = [c async for c in stream.chunks]
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens < 60
    assert 30 <= len(chunks) - 2 <= 50
    assert up.closed and not up.finished
    assert ctx.note is not None and "budget has no room left" in ctx.note
    await lim.flush()
    [status] = await lim.budget_report([Level("team", "billing", budget=team.budget)])
    assert status.spent_usd <= D("0.0005") and status.reserved_usd == 0


async def test_five_hundred_streams_with_disconnects(make_limiter):
    lim = make_limiter()
    q = quotas(lim, team=TEAM)

    async def client(i: int) -> None:
        stream = await q(context(stream=True), Upstream(10, delay=0.0005))
        assert isinstance(stream, ChunkStream)
        n = 0
        async for _ in stream.chunks:
            n += 1
            if i % 10 == 0 and n == 3:  # 10% disconnect mid-stream
                break
        await stream.aclose()

    await asyncio.gather(*(client(i) for i in range(500)))
    await assert_idle(lim)


async def test_stream_dropped_without_aclose_releases(make_limiter):
    import gc

    lim = make_limiter()
    q = quotas(lim, team=TEAM)
    stream = await q(context(stream=True), Upstream(5))
    assert isinstance(stream, ChunkStream)
    del stream
    gc.collect()
    await assert_idle(lim)


async def test_provider_account_limits(make_limiter):
    lim = make_limiter(LimitsConfig(providers={"openai": RateLimitConfig(tpm=1000, concurrent=1)}))
    q = quotas(lim)
    ticket = await q.admit_provider("openai", 600)
    assert (await q.admit_provider("other", 10**6)).admission is None  # no limits: nothing to check
    with pytest.raises(RateLimited) as err:
        await q.admit_provider("openai", 100)
    assert "provider openai: 1 concurrent requests" in err.value.message
    up = Upstream(5)
    async for _ in q.meter_provider_stream(up.chunks(), ticket, 12):
        pass
    await lim.flush()
    ticket = await q.admit_provider("openai", 900)  # settled to 17 real tokens: 983 left
    with pytest.raises(RateLimited) as err:
        await q.admit_provider("openai", 200)
    q.settle_provider(ticket, None)
    await lim.flush()
    assert await lim.in_flight([Level("provider", "openai")]) == [0]


async def test_n_completions_are_reserved_and_n_is_capped(make_limiter):
    from sluice.errors import BadRequest

    q = quotas(make_limiter(), key=LevelLimits(RateLimitConfig(tpm=1000)))
    one = context(max_tokens=400)
    plan = await q.plan_chat(one.chat, "m")  # type: ignore[arg-type]
    many = context(max_tokens=400)
    many.chat.n = 3  # type: ignore[union-attr]
    assert (await q.plan_chat(many.chat, "m")).output_tokens == 3 * plan.output_tokens  # type: ignore[arg-type]
    with pytest.raises(RateLimited):  # 3 x 400 output tokens: over 1000 tokens a minute
        await q(many, lambda ctx: asyncio.sleep(0, response()))
    await q(one, lambda ctx: asyncio.sleep(0, response()))
    too_many = context()
    too_many.chat.n = 9  # type: ignore[union-attr]
    with pytest.raises(BadRequest, match=r"server\.max_n"):
        await q(too_many, lambda ctx: asyncio.sleep(0, response()))
