"""strategy: adaptive — a simulation: two targets whose answers differ in "quality" (the test's
feedback client rates each answer by who gave it), 2,000 requests; then the quality flips."""

from __future__ import annotations

import random
from typing import Any

import pytest

from sluice.config import parse_config
from sluice.errors import ConfigError
from sluice.routing.adaptive import AdaptiveBook
from sluice.store.feedback import FeedbackRow
from tests.routing.conftest import targets

MEMORY = 100
MIN_SHARE = 0.05
FEEDBACK = {
    "metrics": {
        "helpful": {"type": "boolean", "optimize": "max"},
        "stars": {"type": "float", "min": 1, "max": 5},
    }
}
ADAPTIVE = {"metric": "helpful", "min_samples": 20, "min_share": MIN_SHARE, "memory": MEMORY}


def _row(n: int, provider: str, model: str, value: float, metric: str = "helpful") -> FeedbackRow:
    return FeedbackRow(f"r{n}:{metric}", float(n), f"r{n}", "t", "k", metric, value, None, "[]", None, "assistant",
                       provider, model)  # fmt: skip


async def test_traffic_follows_quality_and_keeps_a_minimum_share(make: Any) -> None:
    h = make(
        {"assistant": {"strategy": "adaptive", "adaptive": ADAPTIVE, **targets("good", "bad")}},
        feedback=FEEDBACK,
    )
    book = h.router.adaptive
    book.rng = random.Random(11)
    rater = random.Random(7)
    quality = {"good": 0.9, "bad": 0.3}
    served: list[str] = []
    for n in range(2600):
        if n == 2000:
            quality = {"good": 0.3, "bad": 0.9}  # the quality flips
        out = await h.chat("assistant")
        assert out.answer is not None
        who = out.answer.model  # rated from the answer itself
        served.append(who)
        book.observe(_row(n, "up", who, float(rater.random() < quality[who])))
    assert served[-1000:].count("good") == h.fake.count("good"), "the fake (it keeps 1,000) saw the same"
    settled = served[1500:2000]
    assert settled.count("good") / 500 > 0.8, "the better target takes most of the traffic"
    assert served[500:2000].count("bad") / 1500 >= 0.04, "the other keeps its minimum share"
    follow = next(i for i in range(100, 600) if served[2000 + i - 100 : 2000 + i].count("bad") > 80)
    assert follow <= 2 * MEMORY + 100, f"shares followed the flip after {follow} reports"
    [view] = h.router.health_view()["adaptive"]  # type: ignore[index]
    assert view["model"] == "assistant" and "Thompson sampling" in view["rule"]
    shares = {t["model"]: t["share"] for t in view["targets"]}
    assert shares["bad"] > 0.8 and shares["good"] >= MIN_SHARE * 0.5


def test_explores_evenly_until_every_target_has_min_samples() -> None:
    config = parse_config({
        "providers": {"up": {"type": "openai", "base_url": "http://127.0.0.1:9/v1"}},
        "models": {"a": {"strategy": "adaptive", "adaptive": ADAPTIVE, **targets("x", "y")}},
        "feedback": FEEDBACK,
    })  # fmt: skip
    book = AdaptiveBook(config, random.Random(1))
    for n in range(19):
        book.observe(_row(n, "up", "x", 1.0))
        book.observe(_row(100 + n, "up", "y", 0.0))
    assert not book.observe(_row(3, "up", "x", 1.0)), "a row is counted once"
    from sluice.routing.router import Router
    from sluice.transport.client import Transport

    router = Router(config, {}, Transport())
    router.adaptive = book
    opts = router._options["a"]
    assert 0.4 < book.shares("a", opts)[0] < 0.6, "below min_samples: an even split"
    book.observe(_row(500, "up", "y", 0.0))
    book.observe(_row(501, "up", "x", 1.0))
    assert book.shares("a", opts)[0] > 0.9


@pytest.mark.parametrize(
    ("model", "feedback", "message"),
    [
        ({"strategy": "adaptive"}, FEEDBACK, "needs adaptive"),
        ({"adaptive": ADAPTIVE}, FEEDBACK, "only applies with strategy: adaptive"),
        ({"strategy": "adaptive", "adaptive": {**ADAPTIVE, "metric": "nope"}}, FEEDBACK, "unknown metric 'nope'"),
        ({"strategy": "adaptive", "adaptive": {**ADAPTIVE, "metric": "loose"}},
         {"metrics": {"loose": {"type": "float"}}}, "needs min and max"),
        ({"strategy": "adaptive", "adaptive": {**ADAPTIVE, "min_samples": 500}}, FEEDBACK, "cannot exceed memory"),
    ],
)  # fmt: skip
def test_check_config_refuses_adaptive_it_cannot_run(
    model: dict[str, Any], feedback: Any, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({
            "providers": {"up": {"type": "openai", "base_url": "http://127.0.0.1:9/v1"}},
            "models": {"a": {**model, **targets("x", "y")}}, "feedback": feedback,
        })  # fmt: skip


def test_float_metrics_are_scaled_and_min_metrics_flipped() -> None:
    config = parse_config({
        "providers": {"up": {"type": "openai", "base_url": "http://127.0.0.1:9/v1"}},
        "models": {"a": {"strategy": "adaptive", "adaptive": {**ADAPTIVE, "metric": "stars"}, **targets("x", "y")}},
        "feedback": FEEDBACK,
    })  # fmt: skip
    book = AdaptiveBook(config)
    book.observe(_row(1, "up", "x", 5.0, "stars"))
    book.observe(_row(2, "up", "y", 2.0, "stars"))
    x, y = book.arm("stars", "up", "x"), book.arm("stars", "up", "y")
    assert x.successes == pytest.approx(0.99) and y.successes == pytest.approx(0.25)
