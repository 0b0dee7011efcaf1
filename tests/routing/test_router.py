"""The attempt loop against a real loopback upstream failing on cue: fallbacks, retries, backoff,
breakers, the retry budget, timeouts, streams, and the exact number of upstream attempts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sluice.errors import ProviderError, RateLimited
from sluice.schema.chat import Usage
from sluice.schema.context import RequestContext
from tests.routing.conftest import targets

NO_RETRY = {"retry": {"retries": 0}}


async def test_fallback_to_the_next_target(make: Any) -> None:
    h = make({"m": targets("a", "b")})
    h.fake.script("a", [500])
    out = await h.chat("m")
    assert out.text == "echo: hello there"
    assert [(a.model, a.status, a.error_kind) for a in out.ctx.attempts] == [
        ("a", 500, "server"),
        ("b", 200, None),
    ]
    assert (out.ctx.provider, out.ctx.served_model) == ("up", "b")
    assert (h.fake.count("a"), h.fake.count("b")) == (1, 1)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422, "context"])
async def test_non_retryable_errors_return_at_once(make: Any, status: object) -> None:
    h = make({"m": targets("a", "b")}, routing={"fallback_on": ["server"]})
    h.fake.script("a", [status])
    out = await h.chat("m")
    assert isinstance(out.error, ProviderError) and not out.error.retryable
    assert len(out.ctx.attempts) == 1 and h.fake.count("a") == 1 and h.fake.count("b") == 0
    assert h.clock.sleeps == []


@pytest.mark.parametrize("step", [500, 502, 503, 529, "429:0", "reset", "malformed"])
async def test_retryable_kinds_fall_back(make: Any, step: object) -> None:
    h = make({"m": targets("a", "b")})
    h.fake.script("a", [step])
    out = await h.chat("m")
    assert out.answer is not None and out.ctx.served_model == "b" and len(out.ctx.attempts) == 2


async def test_retry_honours_retry_after_over_backoff(make: Any) -> None:
    h = make({"m": targets("a")}, routing={"retry": {"retries": 1, "backoff": {"base_s": 0.5, "jitter": 0}}})
    h.fake.script("a", ["429:2", "ok"])
    out = await h.chat("m")
    assert out.answer is not None and h.fake.count("a") == 2
    assert sum(h.clock.sleeps) == pytest.approx(2.0), "waited the upstream's retry-after, not just 0.5 s"
    assert out.ctx.attempts[1].backoff_ms == pytest.approx(2000.0)


async def test_retry_after_beyond_the_limit_is_not_retried(make: Any) -> None:
    h = make({"m": targets("a")}, routing={"retry": {"retries": 3, "max_retry_after_s": 10}})
    h.fake.script("a", ["429:60"])
    out = await h.chat("m")
    assert isinstance(out.error, ProviderError) and out.error.kind == "rate_limited"
    assert out.error.retry_after == 60 and h.fake.count("a") == 1 and h.clock.sleeps == []


async def test_exponential_backoff_between_rounds(make: Any) -> None:
    retry = {"retries": 3, "max_attempts": 10, "backoff": {"base_s": 0.5, "multiplier": 2, "jitter": 0.5}}
    h = make({"m": targets("a", "b")}, routing={"retry": retry}, rand=1.0)
    h.fake.script("a", [500, 500, 500])
    h.fake.script("b", [503, 503, 503])
    out = await h.chat("m")
    assert h.clock.sleeps == [0.5, 1.0, 2.0], "one backoff per round, then every failed target again"
    assert [a.model for a in out.ctx.attempts] == ["a", "b", "a", "b", "a", "b", "a"]
    assert out.answer is not None


async def test_attempts_never_exceed_the_bound(make: Any) -> None:
    h = make({"m": targets("a", "b", "c", "d", "e")}, routing={"retry": {"max_attempts": 3, "retries": 5}})
    for name in "abcde":
        h.fake.script(name, [500] * 10)
    out = await h.chat("m")
    assert isinstance(out.error, ProviderError) and out.error.kind == "server"
    assert len(out.ctx.attempts) == 3 and sum(h.fake.count(n) for n in "abcde") == 3
    assert "attempt limit (3) reached" in (out.ctx.route_reason or "")


async def test_kinds_not_listed_do_not_fall_back_but_may_retry(make: Any) -> None:
    h = make({"m": targets("a", "b")}, routing={"fallback_on": ["server"], "retry": {"retries": 1}})
    h.fake.script("a", [529, "ok"])
    out = await h.chat("m")
    assert [a.model for a in out.ctx.attempts] == ["a", "a"] and h.fake.count("b") == 0


async def test_retry_budget_holds_under_an_outage(make: Any) -> None:
    h = make({"m": {"targets": [{"provider": "up", "model": "a"}, {"provider": "up", "model": "fault-slow"}]}},
             routing={"retry_budget": {"ratio": 0.2, "min_in_flight": 0}, **NO_RETRY})  # fmt: skip
    h.fake.script("a", [500] * 10)
    outs = await asyncio.gather(*(h.chat("m") for _ in range(10)))
    assert h.fake.count("a") == 10
    assert h.fake.count("fault-slow") == 2, "extra attempts capped at 20% of the 10 requests in flight"
    assert sum(o.answer is not None for o in outs) == 2
    assert h.router.budget.view()["denied"] == 8
    assert all(o.error is not None and o.error.kind == "server" for o in outs if o.answer is None)


async def test_breaker_opens_skips_then_one_probe_closes_it(make: Any) -> None:
    h = make({"m": targets("a", "b")}, routing={"breaker": {"failures": 2, "cooldown_s": 10}})
    h.fake.script("a", [500, 500])
    for _ in range(2):
        assert (await h.chat("m")).ctx.served_model == "b"
    out = await h.chat("m")
    assert [a.model for a in out.ctx.attempts] == ["b"] and h.fake.count("a") == 2
    assert "skipped up/a: circuit open" in (out.ctx.route_reason or "")
    [a_view] = [t for t in h.router.health_view()["targets"] if t["model"] == "a"]  # type: ignore[attr-defined]
    assert a_view["state"] == "open" and a_view["last_error"] == "server"
    h.clock.now += 10
    probe = await h.chat("m")
    assert probe.ctx.served_model == "a", "after the cooldown one request probes the target"
    assert h.router.health.get(_target(h, "a")).breaker.state == "closed"


def _target(h: Any, model: str) -> Any:
    return next(o.target for o in h.router._options["m"] if o.target.model == model)


async def test_every_breaker_open_fails_fast_with_retry_after(make: Any) -> None:
    h = make({"m": targets("a")}, routing={"breaker": {"failures": 1, "cooldown_s": 30}, **NO_RETRY})
    h.fake.script("a", [502])
    await h.chat("m")
    out = await h.chat("m")
    assert isinstance(out.error, ProviderError) and out.error.kind == "server" and out.error.status == 502
    assert out.error.retry_after == 30 and out.ctx.attempts == [] and h.fake.count("a") == 1


async def test_context_window_falls_to_a_larger_model(make: Any) -> None:
    models = {
        "small": {"targets": [{"provider": "up", "model": "s", "max_input_tokens": 8000}], "fallback": ["same", "big"]},
        "same": {"targets": [{"provider": "up", "model": "same", "max_input_tokens": 8000}]},
        "big": {"targets": [{"provider": "up", "model": "big", "max_input_tokens": 200000}]},
    }  # fmt: skip
    h = make(models)
    h.fake.script("s", ["context"])
    out = await h.chat("small")
    assert [a.model for a in out.ctx.attempts] == ["s", "big"] and h.fake.count("same") == 0
    h2 = make(models, routing={"fallback_on": ["server"]})
    h2.fake.script("s", ["context"])
    assert (await h2.chat("small")).error is not None


async def test_stream_falls_back_before_its_first_chunk(make: Any) -> None:
    h = make({"m": targets("a", "b", "c")}, routing={"first_token_timeout_s": 0.2})
    h.fake.script("a", ["reset"])
    h.fake.script("b", ["slow-first-token"])
    out = await h.chat("m", stream=True)
    assert out.stream_error is None and out.text == "echo: hello there"
    assert [(a.model, a.error_kind) for a in out.ctx.attempts] == [
        ("a", "connection"),
        ("b", "timeout"),
        ("c", None),
    ]


@pytest.mark.parametrize(("step", "kind"), [("drop", "connection"), ("truncate", "bad_response"),
                                            ("stream-error", "server"), ("stall", "timeout")])  # fmt: skip
async def test_stream_broken_after_first_chunk_is_an_error_never_a_retry(
    make: Any, step: str, kind: str
) -> None:
    h = make({"m": {"targets": [{"provider": "quick", "model": "a"}, {"provider": "up", "model": "b"}]}})
    h.fake.script("a", [step])
    out = await h.chat("m", stream=True, text="one two three four five")
    assert out.chunks, "the first chunks reached the caller"
    assert isinstance(out.stream_error, ProviderError) and out.stream_error.kind == kind
    assert not any(c.choices and c.choices[0].finish_reason for c in out.chunks), "never looks finished"
    assert len(out.ctx.attempts) == 1 and h.fake.count("b") == 0
    attempt = out.ctx.attempts[0]
    assert attempt.usage is not None and attempt.estimated, "the partial stream is billed"
    assert h.router.health.get(_target(h, "a")).in_flight == 0


async def test_completed_stream_bills_the_reported_usage_once(make: Any) -> None:
    h = make({"m": targets("a")})
    out = await h.chat("m", stream=True)
    [attempt] = out.ctx.attempts
    assert attempt.usage is not None and not attempt.estimated and attempt.usage.total_tokens > 0


async def test_stream_closed_before_reading_ends_its_attempt(make: Any) -> None:
    h = make({"m": targets("a")})
    ctx = h.ctx("m", stream=True)
    result = await h.router.chat(ctx)
    assert h.router.health.get(_target(h, "a")).in_flight == 1
    await result.aclose()  # type: ignore[union-attr]
    assert h.router.health.get(_target(h, "a")).in_flight == 0


class Guard:
    def __init__(self, refuse: set[str]) -> None:
        self.refuse = refuse
        self.settled: list[tuple[str, Usage | None]] = []

    async def admit_attempt(self, ctx: RequestContext, provider: str) -> str:
        if provider in self.refuse:
            raise RateLimited(f"provider '{provider}' account limit")
        return provider

    def settle_attempt(self, handle: str, usage: Usage | None) -> None:
        self.settled.append((handle, usage))


async def test_attempt_guard_refusal_moves_on_without_an_attempt(make: Any) -> None:
    guard = Guard({"up"})
    models = {"m": {"targets": [{"provider": "up", "model": "a"}, {"provider": "up2", "model": "b"}]}}
    h = make(models, guard=guard)
    out = await h.chat("m")
    assert [a.provider for a in out.ctx.attempts] == ["up2"] and h.fake.count("a") == 0
    assert [p for p, u in guard.settled] == ["up2"] and guard.settled[0][1] is not None
    guard.refuse.add("up2")
    out = await h.chat("m")
    assert isinstance(out.error, RateLimited) and out.ctx.attempts == []


async def test_guard_is_settled_for_failed_attempts_and_streams(make: Any) -> None:
    guard = Guard(set())
    h = make({"m": targets("a", "b")}, guard=guard)
    h.fake.script("a", [500])
    await h.chat("m", stream=True)
    assert [(p, u is not None) for p, u in guard.settled] == [("up", False), ("up", True)]


async def test_embeddings_fall_back_too(make: Any) -> None:
    from sluice.schema.embeddings import EmbeddingRequest

    h = make({"e": targets("fault-500", "text-embedding-3-small")})
    ctx = RequestContext(request_id="e1", dialect="openai", endpoint="embeddings", presented_key=None)
    ctx.embedding = EmbeddingRequest(model="e", input="hi")
    ctx.requested_model = "e"
    result = await h.router.embed(ctx)
    assert result.data and [a.status for a in ctx.attempts] == [500, 200]
    assert ctx.attempts[1].usage is not None


async def test_request_time_limit_bounds_retries(make: Any) -> None:
    routes = [
        {"name": "fast", "match": {}, "timeout_s": 1, "retry": {"retries": 3, "backoff": {"base_s": 2}}}
    ]
    h = make({"m": targets("a")}, routes=routes)
    h.fake.script("a", [500, 500])
    out = await h.chat("m")
    assert out.error is not None and len(out.ctx.attempts) == 1 and h.clock.sleeps == []
    assert "no time left for a retry" in (out.ctx.route_reason or "")


async def test_caller_leaving_during_a_retry_wait_frees_the_probe_and_budget(make: Any) -> None:
    h = make(
        {"m": targets("a")}, routing={"breaker": {"failures": 1, "cooldown_s": 0}, "retry": {"retries": 1}}
    )
    h.fake.script("a", ["429:3"])
    waiting = asyncio.Event()
    calls: list[float] = []

    async def sleep(seconds: float) -> None:
        calls.append(seconds)
        if len(calls) == 2:  # the round's backoff passes; the target's own retry-after wait hangs
            waiting.set()
            await asyncio.sleep(60)

    object.__setattr__(h.router._env, "sleep", sleep)
    task = asyncio.create_task(h.chat("m"))
    await waiting.wait()
    breaker = h.router.health.get(_target(h, "a")).breaker
    assert breaker.state == "half_open" and breaker.probing, "the retry holds the probe while it waits"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert h.router.budget.extra == 0 and h.router.budget.requests == 0
    assert breaker.admit() == "probe", "no probe left dangling"
