"""Shadow traffic never delays or changes the caller's answer; it is recorded and compared."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from sluice.routing.shadow import similarity
from tests.routing.conftest import targets

MODELS = {"main": targets("primary"), "cand": targets("fault-slow")}


def _route(percent: float = 100, **extra: Any) -> list[dict[str, Any]]:
    return [
        {"name": "eval", "match": {"model": "main"}, "shadow": {"model": "cand", "percent": percent, **extra}}
    ]


async def _settle(h: Any) -> None:
    for _ in range(100):
        if not h.router.shadows.tasks:
            return
        await asyncio.sleep(0.05)


async def test_shadow_runs_beside_the_answer_and_is_compared(make: Any) -> None:
    h = make(MODELS, routes=_route())
    started = time.perf_counter()
    out = await h.chat("main", text="the same words")
    assert time.perf_counter() - started < 0.4, "the slow shadow did not delay the caller"
    assert out.text == "echo: the same words" and out.ctx.served_model == "primary"
    assert [a.model for a in out.ctx.attempts] == ["primary"]
    assert h.shadows == []
    await _settle(h)
    [shadow] = h.shadows
    assert shadow.shadow_of == out.ctx.request_id and "shadow" in shadow.tags and shadow.route == "eval"
    assert [a.model for a in shadow.attempts] == ["fault-slow"] and shadow.usage is not None
    cmp = json.loads(shadow.comparison or "{}")
    assert cmp["similarity"] == 1.0
    assert cmp["primary"]["model"] == "primary" and cmp["shadow"]["model"] == "fault-slow"
    assert cmp["shadow"]["latency_ms"] >= 500 > cmp["primary"]["latency_ms"]
    assert cmp["primary"]["completion_tokens"] == cmp["shadow"]["completion_tokens"] == 4


async def test_streamed_answers_are_compared_and_shadow_errors_recorded(make: Any) -> None:
    h = make({"main": targets("primary"), "cand": targets("broken")}, routes=_route())
    h.fake.script("broken", [500])
    out = await h.chat("main", stream=True)
    assert out.text == "echo: hello there"
    await _settle(h)
    [shadow] = h.shadows
    cmp = json.loads(shadow.comparison or "{}")
    assert cmp["shadow"]["error"] == "server" and cmp["similarity"] is None
    assert shadow.error is not None and shadow.status == 502


async def test_percent_and_in_flight_cap(make: Any) -> None:
    h = make(MODELS, routes=_route(percent=40), rand=0.5)
    await h.chat("main")
    assert not h.router.shadows.tasks, "0.5 * 100 >= 40: not mirrored"
    h = make(MODELS, routes=_route(max_in_flight=2))
    await asyncio.gather(*(h.chat("main") for _ in range(5)))
    assert len(h.router.shadows.tasks) == 2
    await _settle(h)
    assert len(h.shadows) == 2 and h.fake.count("fault-slow") == 2


def test_similarity() -> None:
    assert similarity("The cat sat", "the CAT sat") == 1.0
    assert similarity("a b", "c d") == 0.0
    assert 0.5 < similarity("the cat sat on the mat", "the cat sat on a hat") < 1.0
    assert similarity("", "") == 1.0 and similarity("x", "") == 0.0
