"""Target ordering: pure functions of the targets, what health knows, and the request's shape.

Each strategy returns every target, best first; the attempt loop skips those whose breaker is open.
``rand`` is injected so ordering is reproducible in tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from sluice.config.routing import Strategy
from sluice.pricing import Price
from sluice.providers.base import Target
from sluice.schema.chat import ChatRequest

#: Output tokens assumed by ``cheapest`` when a request sets no max_tokens.
ASSUMED_OUTPUT_TOKENS = 256
_CHARS_PER_TOKEN = 4
_TOKENS_PER_MESSAGE = 4


class Load(Protocol):
    """What strategies read from a target's health."""

    @property
    def in_flight(self) -> int: ...

    @property
    def latency_ms(self) -> float | None: ...

    @property
    def ttft_ms(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class Option:
    """One target of a model, with what is known about it up front. Built once at start-up."""

    target: Target
    load: Load
    price: Price | None
    #: Context window in tokens, if known.
    window: int | None


@dataclass(frozen=True, slots=True)
class Shape:
    """The request as routing sees it: estimated sizes, streamed or not, tools offered."""

    prompt_tokens: int
    output_tokens: int
    stream: bool = False
    tools: bool = False
    messages: int = 1


def estimate_prompt_tokens(req: ChatRequest) -> int:
    """≈ characters / 4 plus a few per message: cheap, and good enough to route by."""
    chars = 0
    for m in req.messages:
        chars += len(m.text())
        if m.tool_calls:
            chars += sum(len(tc.function.arguments) + len(tc.function.name) for tc in m.tool_calls)
    for tool in req.tools or ():
        chars += len(tool.function.name) + len(tool.function.description or "") + 64
    return chars // _CHARS_PER_TOKEN + _TOKENS_PER_MESSAGE * len(req.messages)


def shape_of(req: ChatRequest) -> Shape:
    out = req.output_limit()
    return Shape(
        prompt_tokens=estimate_prompt_tokens(req),
        output_tokens=out if out is not None else ASSUMED_OUTPUT_TOKENS,
        stream=req.stream,
        tools=bool(req.tools) and req.tool_choice != "none",
        messages=len(req.messages),
    )


def order(
    strategy: Strategy, options: Sequence[Option], shape: Shape, rand: Callable[[], float]
) -> list[Option]:
    if len(options) < 2 or strategy == "fallback":
        return list(options)
    if strategy == "weighted":
        return weighted(options, rand)
    if strategy == "least_latency":
        return least_latency(options, shape.stream)
    if strategy == "least_busy":
        return sorted(options, key=lambda o: o.load.in_flight)
    return cheapest(options, shape)


def weighted(options: Sequence[Option], rand: Callable[[], float]) -> list[Option]:
    """A weighted random order (each position drawn in proportion to the weights left):
    key ``u ** (1 / w)``, largest first (Efraimidis-Spirakis)."""
    keyed = [(rand() ** (1.0 / o.target.weight), i) for i, o in enumerate(options)]
    keyed.sort(reverse=True)
    return [options[i] for _, i in keyed]


def least_latency(options: Sequence[Option], stream: bool) -> list[Option]:
    """Lowest moving-average latency first — time to first token for streams. A target without a
    sample yet goes first, so every target gets measured."""

    def key(o: Option) -> float:
        first, second = (o.load.ttft_ms, o.load.latency_ms) if stream else (o.load.latency_ms, o.load.ttft_ms)
        value = first if first is not None else second
        return value if value is not None else -1.0

    return sorted(options, key=key)


def cheapest(options: Sequence[Option], shape: Shape) -> list[Option]:
    """Lowest estimated cost among targets whose context fits the prompt; targets that do not fit,
    then targets without a price, come last."""

    def key(o: Option) -> tuple[bool, bool, Decimal]:
        fits = o.window is None or shape.prompt_tokens + shape.output_tokens <= o.window
        if o.price is None:
            return (not fits, True, Decimal(0))
        cost = shape.prompt_tokens * o.price.input_per_token + shape.output_tokens * o.price.output_per_token
        return (not fits, False, cost)

    return sorted(options, key=key)
