"""Property: over random failure sequences, attempts stay within the bound, the upstream sees exactly
the attempts recorded, a caller never gets two answers or a cut answer that looks complete, and the
recorded spend is the sum of what the attempts were billed."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice.config import parse_config
from sluice.errors import SluiceError
from sluice.pipeline.accounting import Accounting
from sluice.pipeline.core import compose
from sluice.pricing import PriceBook
from sluice.providers.registry import create_adapter
from sluice.routing.router import Router, RouterHooks
from sluice.schema.chat import ChatRequest, ChatResponse, Message
from sluice.schema.context import ChunkStream, RequestContext
from sluice.store.records import RequestRecord
from sluice.store.sqlite import SQLiteStore
from sluice.store.writer import RecordWriter
from sluice.testing.fake_openai import FakeOpenAI
from sluice.transport.client import Transport
from tests.routing.conftest import Clock

STEPS = ["ok", 500, 503, 529, "429:0", "429:1", 400, "reset", "malformed", "truncate", "drop", "stream-error",
         "context"]  # fmt: skip
TEXT = "alpha beta gamma delta"
EXPECTED = f"echo: {TEXT}"
_ids = itertools.count()


class Capture(RecordWriter):
    def __init__(self) -> None:
        super().__init__(SQLiteStore(":memory:"), Path("/nonexistent/spool"))
        self.records: list[RequestRecord] = []

    def submit(self, record: RequestRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as f:
        yield f


scenario = st.fixed_dictionaries({
    "scripts": st.lists(st.lists(st.sampled_from(STEPS), max_size=4), min_size=1, max_size=3),
    "stream": st.booleans(),
    "retries": st.integers(0, 2),
    "max_attempts": st.integers(1, 5),
    "budget_min": st.integers(0, 3),
})  # fmt: skip


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenario)
def test_random_failure_sequences(fake: FakeOpenAI, case: dict[str, Any]) -> None:
    n = next(_ids)
    names = [f"p{n}-{i}" for i in range(len(case["scripts"]))]
    for name, steps in zip(names, case["scripts"], strict=True):
        fake.script(name, steps)
    ctx, record, outcome, router = asyncio.run(_serve(fake, names, case))

    attempts = ctx.attempts
    assert len(attempts) <= case["max_attempts"]
    assert sum(fake.count(name) for name in names) == len(attempts), (
        "upstream saw exactly the recorded attempts"
    )

    kind, text, finished = outcome
    if kind == "answer":
        assert text == EXPECTED and finished, "one whole answer"
    elif kind == "stream-error":
        assert not finished, "a broken stream never looks complete"
        assert EXPECTED.startswith(text), "never a second answer mixed in"
    else:
        assert kind == "error" and text == ""

    billed = [a for a in attempts if a.usage is not None]
    assert len(billed) <= 1, "one answer is billed once"
    assert record.cost_nusd == (sum(a.cost_nusd or 0 for a in billed) if billed else None)
    if billed:
        assert billed[0] is attempts[-1], "only the attempt that reached the caller is billed"
    for opt in router._options["m"]:
        assert router.health.get(opt.target).in_flight == 0
    assert router.budget.extra == 0 and router.budget.requests == 0


async def _serve(fake: FakeOpenAI, names: list[str], case: dict[str, Any]) -> tuple[RequestContext, RequestRecord, tuple[str, str, bool], Router]:  # fmt: skip
    config = parse_config({
        "providers": {"up": {"type": "openai", "base_url": fake.base_url, "timeout_s": 5}},
        "models": {"m": {"targets": [{"provider": "up", "model": name} for name in names]}},
        "prices": {name: {"input_per_mtok": 1.0, "output_per_mtok": 2.0} for name in names},
        "routing": {"retry": {"retries": case["retries"], "max_attempts": case["max_attempts"]},
                    "retry_budget": {"ratio": 0.2, "min_in_flight": case["budget_min"]},
                    "breaker": {"failures": 1000}},
    })  # fmt: skip
    clock = Clock()
    transport = Transport()
    adapters = {name: create_adapter(name, p) for name, p in config.providers.items()}
    router = Router(config, adapters, transport, hooks=RouterHooks(clock=clock, sleep=clock.sleep))
    capture = Capture()
    accounting = Accounting(capture, PriceBook.load(config.prices), {"up": "openai"}, log_access=False)
    pipeline = compose([accounting.middleware], router.chat)  # type: ignore[arg-type]
    ctx = RequestContext(request_id="r", dialect="openai", endpoint="chat", presented_key=None)
    ctx.chat = ChatRequest(model="m", messages=[Message(role="user", content=TEXT)], stream=case["stream"])
    ctx.requested_model = "m"
    try:
        outcome = await _consume(pipeline, ctx)
    finally:
        await transport.close()
    [record] = capture.records
    return ctx, record, outcome, router


async def _consume(pipeline: Any, ctx: RequestContext) -> tuple[str, str, bool]:
    try:
        result = await pipeline(ctx)
    except SluiceError:
        return "error", "", False
    if isinstance(result, ChatResponse):
        choice = result.choices[0]
        return "answer", choice.message.content or "", choice.finish_reason is not None
    assert isinstance(result, ChunkStream)
    text, finished = [], False
    try:
        async for chunk in result.chunks:
            for c in chunk.choices:
                text.append(c.delta.content or "")
                finished = finished or c.finish_reason is not None
    except SluiceError:
        return "stream-error", "".join(text), finished
    finally:
        await result.aclose()
    return "answer", "".join(text), finished
