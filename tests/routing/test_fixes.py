"""The three fixes found while verifying today's strategies: least_latency measures a recovered
target again, explain shows the strategy's order, and shadow failures are counted under their model
without touching the primary traffic's breakers."""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass
from typing import Any

from sluice.config import parse_config
from sluice.providers.base import Target
from sluice.routing.explain import explain, shadow_report
from sluice.routing.routes import Facts
from sluice.routing.strategies import Freshness, Option, Shape, order
from sluice.store.records import ShadowRow
from tests.routing.conftest import targets

SHAPE = Shape(prompt_tokens=10, output_tokens=10)


@dataclass
class Load:
    in_flight: int = 0
    latency_ms: float | None = None
    ttft_ms: float | None = None
    sampled_at: float | None = None


def _opt(name: str, **load: Any) -> Option:
    return Option(Target("p", name), Load(**load), None, None)


def test_least_latency_refreshes_the_stalest_target_with_a_small_share() -> None:
    opts = [
        _opt("recovered", latency_ms=77.0, sampled_at=50.0),
        _opt("fast", latency_ms=5.0, sampled_at=99.0),
    ]
    fresh = Freshness(refresh=0.05, max_age_s=60.0, now=100.0)
    rng = random.Random(3)
    firsts = [order("least_latency", opts, SHAPE, rng.random, fresh)[0].target.model for _ in range(2000)]
    share = firsts.count("recovered") / len(firsts)
    assert 0.03 < share < 0.07, share
    no_refresh = Freshness(refresh=0.0, max_age_s=60.0, now=100.0)
    assert order("least_latency", opts, SHAPE, rng.random, no_refresh)[0].target.model == "fast"


def test_least_latency_estimate_older_than_max_age_counts_as_unmeasured() -> None:
    opts = [_opt("fast", latency_ms=5.0, sampled_at=150.0), _opt("old", latency_ms=77.0, sampled_at=100.0)]
    fresh = Freshness(refresh=0.0, max_age_s=60.0, now=150.0)
    assert order("least_latency", opts, SHAPE, lambda: 0.9, fresh)[0].target.model == "fast"
    later = Freshness(refresh=0.0, max_age_s=60.0, now=170.0)
    assert [o.target.model for o in order("least_latency", opts, SHAPE, lambda: 0.9, later)] == [
        "old",
        "fast",
    ]


async def test_a_target_that_recovered_is_measured_again(make: Any) -> None:
    h = make({"ll": {"strategy": "least_latency", **targets("recovered", "steady")}})
    rng = random.Random(5)
    object.__setattr__(h.router._env, "rand", rng.random)
    board = h.router.health
    rec, steady = board.get(Target("up", "recovered")), board.get(Target("up", "steady"))
    rec.latency_ms, rec.sampled_at = 77.0, h.clock.now  # it was slow; it answers at once now
    steady.latency_ms, steady.sampled_at = 20.0, h.clock.now
    for _ in range(200):
        out = await h.chat("ll")
        assert out.error is None
        h.clock.now += 0.01
    assert h.fake.count("recovered") > 0, "a recovered target is measured again"
    assert rec.latency_ms is not None and rec.latency_ms < 20.0, "its estimate followed it down"


def test_explain_shows_the_cheapest_order_not_the_policy_order() -> None:
    config = parse_config({
        "providers": {"up": {"type": "openai", "base_url": "http://127.0.0.1:9/v1"}},
        "models": {"c": {"strategy": "cheapest", "targets": [
            {"provider": "up", "model": "gpt-4o"}, {"provider": "up", "model": "gpt-4o-mini"}]}},
    })  # fmt: skip
    [plan] = explain(config, Facts(model="c"))["plans"].values()
    [m] = plan["models"]
    assert [t["model"] for t in m["targets"]] == ["gpt-4o-mini", "gpt-4o"]
    assert "cheapest first" in m["order"]
    assert m["targets"][0]["est_cost_usd"] < m["targets"][1]["est_cost_usd"]


async def _settle(h: Any) -> None:
    for _ in range(100):
        if not h.router.shadows.tasks:
            return
        await asyncio.sleep(0.05)


async def test_failing_shadow_counts_under_its_model_and_leaves_primary_breaker_closed(make: Any) -> None:
    models = {"main": targets("primary"), "other": targets("shared"), "cand": targets("shared")}
    routes = [{"name": "eval", "match": {"model": "main"}, "shadow": {"model": "cand", "percent": 100}}]
    h = make(models, routes=routes, routing={"breaker": {"failures": 2, "error_ratio": None}})
    h.fake.script("shared", [500] * 6)
    for _ in range(6):
        assert (await h.chat("main")).error is None
        await _settle(h)
    assert h.router.shadow_health.get(Target("up", "shared")).breaker.state == "open"
    assert h.router.health.get(Target("up", "shared")).breaker.state == "closed"
    h.fake.script("shared", [])
    assert (await h.chat("other")).error is None, "primary traffic to the same target still flows"
    rows = [
        ShadowRow(s.request_id, 0.0, s.route, s.shadow_of or "", s.status, None, s.comparison)
        for s in h.shadows
    ]
    [group] = shadow_report(rows)
    assert group["shadow_model"] == "cand" and group["primary_model"] == "main"
    assert group["shadow_errors"] == 6 and group["calls"] == 6
    assert json.loads(h.shadows[0].comparison or "{}")["shadow"]["model"] == "shared", "the target it tried"
