"""Target ordering is pure: the same inputs always give the same order."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal

from sluice.pricing import Price
from sluice.providers.base import Target
from sluice.routing.strategies import Option, Shape, estimate_prompt_tokens, order, shape_of
from sluice.schema.chat import ChatRequest, FunctionDef, Message, Tool


@dataclass
class Load:
    in_flight: int = 0
    latency_ms: float | None = None
    ttft_ms: float | None = None


def _opt(name: str, weight: float = 1.0, price: tuple[str, str] | None = None, window: int | None = None,
         **load: object) -> Option:  # fmt: skip
    p = Price(Decimal(price[0]), Decimal(price[1])) if price else None
    return Option(Target("p", name, weight), Load(**load), p, window)  # type: ignore[arg-type]


def _names(options: list[Option]) -> list[str]:
    return [o.target.model for o in options]


SHAPE = Shape(prompt_tokens=1000, output_tokens=100)


def test_fallback_keeps_config_order() -> None:
    opts = [_opt("a"), _opt("b"), _opt("c")]
    assert _names(order("fallback", opts, SHAPE, random.random)) == ["a", "b", "c"]


def test_weighted_follows_the_weights() -> None:
    opts = [_opt("a", 3), _opt("b", 1)]
    rng = random.Random(7)
    firsts = Counter(order("weighted", opts, SHAPE, rng.random)[0].target.model for _ in range(4000))
    assert 0.70 < firsts["a"] / 4000 < 0.80
    assert sorted(_names(order("weighted", opts, SHAPE, rng.random))) == ["a", "b"], "every target, once"


def test_least_latency_uses_ttft_for_streams_and_tries_unmeasured_first() -> None:
    opts = [_opt("slow", latency_ms=900, ttft_ms=50), _opt("fast", latency_ms=100, ttft_ms=400)]
    assert _names(order("least_latency", opts, SHAPE, random.random)) == ["fast", "slow"]
    stream = Shape(prompt_tokens=10, output_tokens=10, stream=True)
    assert _names(order("least_latency", opts, stream, random.random)) == ["slow", "fast"]
    new = [*opts, _opt("new")]
    assert _names(order("least_latency", new, SHAPE, random.random))[0] == "new"


def test_least_busy_prefers_fewest_in_flight_ties_in_order() -> None:
    opts = [_opt("a", in_flight=3), _opt("b", in_flight=1), _opt("c", in_flight=1)]
    assert _names(order("least_busy", opts, SHAPE, random.random)) == ["b", "c", "a"]


def test_cheapest_among_targets_that_fit_the_context() -> None:
    opts = [
        _opt("unpriced"),
        _opt("pricey", price=("0.00001", "0.00003")),
        _opt("cheap-small", price=("0.0000001", "0.0000002"), window=500),
        _opt("cheap", price=("0.000001", "0.000002"), window=200_000),
    ]
    assert _names(order("cheapest", opts, SHAPE, random.random)) == [
        "cheap",
        "pricey",
        "unpriced",
        "cheap-small",
    ]
    tiny = Shape(prompt_tokens=10, output_tokens=10)
    assert _names(order("cheapest", opts, tiny, random.random))[0] == "cheap-small"


def test_request_shape_estimates() -> None:
    req = ChatRequest(model="m", messages=[Message(role="user", content="x" * 400)], max_tokens=50)
    assert estimate_prompt_tokens(req) == 104
    shape = shape_of(req)
    assert (shape.output_tokens, shape.tools, shape.stream) == (50, False, False)
    tool = Tool(function=FunctionDef(name="get_weather"))
    assert shape_of(ChatRequest(model="m", messages=[], tools=[tool])).tools
    assert not shape_of(ChatRequest(model="m", messages=[], tools=[tool], tool_choice="none")).tools
