"""Residency: a target that does not meet every requirement of a request is never sent it — not as a
primary, a fallback, a retry or a shadow. Checked where it matters: at the fake upstream, which
records every request it gets."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sluice.config import parse_config
from sluice.config.residency import requirements_allow, requirements_from
from sluice.errors import BadRequest, ConfigError, SluiceError
from sluice.providers.registry import create_adapter
from sluice.routing.router import Router, RouterHooks
from sluice.schema.chat import ChatRequest, Message
from sluice.schema.context import ChunkStream, Principal, RequestContext
from sluice.testing.fake_openai import FakeOpenAI
from sluice.transport.client import Transport
from tests.routing.conftest import Clock

REGIONS = ["eu", "us", "ap"]
COMPLIANCE = ["self-hosted", "hipaa"]
STEPS = ["ok", 500, 503, "429:0", "reset", 400]
STRATEGIES = ["fallback", "weighted", "least_latency", "least_busy", "cheapest"]
_runs = itertools.count()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as f:
        yield f


labels = st.fixed_dictionaries(
    {}, optional={"region": st.sampled_from(REGIONS), "compliance": st.lists(st.sampled_from(COMPLIANCE), min_size=1, unique=True)}
)  # fmt: skip
requirement = st.dictionaries(
    st.sampled_from(["region", "compliance"]),
    st.lists(st.sampled_from(REGIONS + COMPLIANCE), min_size=1, max_size=2, unique=True),
    max_size=2,
)
scenario = st.fixed_dictionaries({
    "labels": st.lists(labels, min_size=2, max_size=4),
    "models": st.lists(
        st.fixed_dictionaries({
            "targets": st.lists(st.tuples(st.integers(0, 3), st.lists(st.sampled_from(STEPS), max_size=3)),
                                min_size=1, max_size=3),
            "strategy": st.sampled_from(STRATEGIES),
        }), min_size=2, max_size=3),
    "team_require": requirement,
    "route_require": requirement,
    "request_require": requirement,
    "tagged": st.booleans(),
    "shadow": st.booleans(),
    "stream": st.booleans(),
})  # fmt: skip


def _policy(fake: FakeOpenAI, case: dict[str, Any], run: int) -> tuple[dict[str, Any], dict[str, int]]:
    n = len(case["labels"])
    providers = {
        f"p{i}": {"type": "openai", "base_url": fake.base_url, "timeout_s": 5, "labels": lab}
        for i, lab in enumerate(case["labels"])
    }
    owner: dict[str, int] = {}
    models: dict[str, Any] = {}
    for j, m in enumerate(case["models"]):
        tgts = []
        for k, (p, steps) in enumerate(m["targets"]):
            name = f"r{run}-m{j}-t{k}"
            owner[name] = p % n
            fake.script(name, steps)
            tgts.append({"provider": f"p{p % n}", "model": name})
        models[f"m{j}"] = {"targets": tgts, "strategy": m["strategy"], "fallback": [f"m{x}" for x in range(j + 1, len(case["models"]))]}  # fmt: skip
    route: dict[str, Any] = {
        "name": "reg",
        "match": {"tags": ["regulated"]},
        "model": "m0",
        "require": case["route_require"],
    }
    if case["shadow"]:
        route["shadow"] = {"model": f"m{len(models) - 1}", "percent": 100}
    policy = {
        "providers": providers, "models": models, "routes": [route],
        "teams": {"t": {"require": case["team_require"]}},
        "routing": {"retry": {"retries": 1, "max_attempts": 6}, "retry_budget": {"min_in_flight": 10},
                    "breaker": {"failures": 2, "error_ratio": None}, "latency_refresh": 0.3},
    }  # fmt: skip
    return policy, owner


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)
@given(scenario)
def test_no_request_reaches_a_target_that_violates_a_requirement(
    fake: FakeOpenAI, case: dict[str, Any]
) -> None:
    run = next(_runs)
    policy, owner = _policy(fake, case, run)
    try:
        config = parse_config(policy)
    except ConfigError:
        assume(False)  # check-config refuses requirements no target can meet: not a policy to serve
        return
    reqs = requirements_from(case["team_require"], "team") + requirements_from(case["request_require"], "req")
    if case["tagged"]:
        reqs += requirements_from(case["route_require"], "route")
    seen_before = len(fake.requests)
    outcomes = asyncio.run(_serve(fake, config, case))
    sent = [
        r["body"]["model"]
        for r in fake.requests[seen_before:]
        if str(r["body"].get("model", "")).startswith(f"r{run}-")
    ]
    for model in sent:
        provider_labels = case["labels"][owner[model]]
        assert requirements_allow(provider_labels, reqs), f"{model} (labels {provider_labels}) got a request"
    for out in outcomes:
        if isinstance(out, BadRequest) and out.code == "requirement_not_met":
            assert "required by" in out.message


async def _serve(fake: FakeOpenAI, config: Any, case: dict[str, Any]) -> list[Any]:
    clock = Clock()
    transport = Transport()
    adapters = {name: create_adapter(name, p) for name, p in config.providers.items()}
    rng = iter(itertools.cycle([0.1, 0.7, 0.35, 0.9, 0.02]))
    router = Router(
        config, adapters, transport, hooks=RouterHooks(clock=clock, sleep=clock.sleep, rand=lambda: next(rng))
    )
    outcomes: list[Any] = []
    try:
        for i in range(4):  # several requests: breakers open, the refresh share and weights move traffic
            outcomes.append(await _one(router, case, i))
        for _ in range(100):
            if not router.shadows.tasks:
                break
            await asyncio.sleep(0.02)
    finally:
        await router.aclose(1.0)
        await transport.close()
    return outcomes


async def _one(router: Router, case: dict[str, Any], i: int) -> Any:
    from sluice.config.residency import requirements_from as rf

    ctx = RequestContext(request_id=f"q{i}", dialect="openai", endpoint="chat", presented_key=None)
    ctx.chat = ChatRequest(model="m0", messages=[Message(role="user", content="hi")], stream=case["stream"])
    ctx.requested_model = "m0"
    ctx.principal = Principal(key_id="k", team="t", user=None, name=None, models=None)
    ctx.tags = ("regulated",) if case["tagged"] else ()
    ctx.require = rf(case["request_require"], "the request")
    try:
        result = await router.chat(ctx)
    except SluiceError as exc:
        return exc
    if isinstance(result, ChunkStream):
        try:
            async for _ in result.chunks:
                pass
        except SluiceError as exc:
            return exc
        finally:
            await result.aclose()
    return result


async def test_nothing_satisfies_is_a_400_naming_the_requirement(make: Any) -> None:
    h = make(
        {"m": {"targets": [{"provider": "up", "model": "a"}, {"provider": "up2", "model": "b"}]}},
    )
    ctx = h.ctx("m")
    ctx.require = requirements_from({"region": ["eu"]}, "the request")
    out = await h.run(ctx)
    assert isinstance(out.error, BadRequest) and out.error.code == "requirement_not_met"
    assert "region in [eu] (required by the request)" in out.error.message
    assert h.fake.count("a") == h.fake.count("b") == 0
