"""A Router in front of a real loopback fake upstream, with an injected clock and sleep."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from sluice.config import parse_config
from sluice.errors import SluiceError
from sluice.providers.registry import create_adapter
from sluice.routing.attempt import AttemptGuard
from sluice.routing.router import Router, RouterHooks
from sluice.schema.chat import ChatChunk, ChatRequest, ChatResponse, Message
from sluice.schema.context import ChunkStream, RequestContext
from sluice.testing.fake_openai import FakeOpenAI
from sluice.transport.client import Transport


class Clock:
    """Manual time: ``sleep`` advances it instead of waiting."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class Outcome:
    ctx: RequestContext
    answer: ChatResponse | None = None
    chunks: list[ChatChunk] = field(default_factory=list)
    error: SluiceError | None = None
    stream_error: SluiceError | None = None

    @property
    def text(self) -> str:
        if self.answer is not None:
            return self.answer.choices[0].message.content or ""
        return "".join(c.choices[0].delta.content or "" for c in self.chunks if c.choices)


@dataclass
class Harness:
    router: Router
    fake: FakeOpenAI
    clock: Clock
    transport: Transport
    shadows: list[RequestContext] = field(default_factory=list)

    def ctx(
        self, model: str, *, stream: bool = False, text: str = "hello there", **fields: Any
    ) -> RequestContext:
        ctx = RequestContext(
            request_id=f"req_{id(object())}", dialect="openai", endpoint="chat", presented_key=None
        )
        ctx.chat = ChatRequest(
            model=model, messages=[Message(role="user", content=text)], stream=stream, **fields
        )
        ctx.requested_model = model
        return ctx

    async def chat(self, model: str, **kw: Any) -> Outcome:
        ctx = self.ctx(model, **kw)
        return await self.run(ctx)

    async def run(self, ctx: RequestContext) -> Outcome:
        out = Outcome(ctx)
        try:
            result = await self.router.chat(ctx)
        except SluiceError as exc:
            out.error = exc
            return out
        if isinstance(result, ChunkStream):
            try:
                async for chunk in result.chunks:
                    out.chunks.append(chunk)
            except SluiceError as exc:
                out.stream_error = exc
            finally:
                await result.aclose()
        else:
            out.answer = result
        return out


def _policy(fake: FakeOpenAI, models: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "providers": {
            "up": {"type": "openai", "base_url": fake.base_url, "timeout_s": 5},
            "up2": {"type": "openai", "base_url": fake.base_url, "timeout_s": 5},
            "quick": {"type": "openai", "base_url": fake.base_url, "timeout_s": 0.3},
        },
        "models": models,
        **extra,
    }


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(slow_s=0.6, stall_s=1.0) as f:
        yield f


@pytest.fixture
async def make(fake: FakeOpenAI) -> AsyncIterator[Any]:
    made: list[Harness] = []

    def build(
        models: dict[str, Any], *, guard: AttemptGuard | None = None, rand: float = 0.5, **extra: Any
    ) -> Harness:
        config = parse_config(_policy(fake, models, **extra))
        clock = Clock()
        adapters = {n: create_adapter(n, p) for n, p in config.providers.items()}
        transport = Transport()
        shadows: list[RequestContext] = []
        hooks = RouterHooks(clock=clock, sleep=clock.sleep, rand=lambda: rand, shadow_sink=shadows.append)
        router = Router(config, adapters, transport, guard=guard, hooks=hooks)
        harness = Harness(router, fake, clock, transport, shadows)
        made.append(harness)
        return harness

    yield build
    for h in made:
        await h.router.aclose(1.0)
        await h.transport.close()


def targets(*names: str, provider: str = "up") -> dict[str, Any]:
    return {"targets": [{"provider": provider, "model": n} for n in names]}
