"""Target ordering: pure functions of the targets, what health knows, and the request's shape.

Each strategy returns every target, best first; the attempt loop skips those whose breaker is open.
``rand`` is injected so ordering is reproducible in tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from sluice.config.model import TargetConfig
from sluice.config.routing import Strategy
from sluice.pricing import Price, PriceBook
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

    @property
    def sampled_at(self) -> float | None:
        """Clock time of the newest latency sample (None: never measured)."""
        ...


@dataclass(frozen=True, slots=True)
class Freshness:
    """How ``least_latency`` keeps its estimates true: a share of requests goes to the target
    measured longest ago, and an estimate older than ``max_age_s`` counts as no estimate."""

    refresh: float
    max_age_s: float
    now: float


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


def make_option(t: TargetConfig, prices: PriceBook, provider_type: str | None, load: Load) -> Option:
    """A policy target with its price and context window (the target's own, else the price book's)."""
    target = Target(t.provider, t.model, t.weight if t.weight is not None else 1.0, t.timeout_s)
    price = prices.lookup(t.model, provider_type)
    window = t.max_input_tokens or (price.max_input_tokens if price is not None else None)
    return Option(target, load, price, window)


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
    strategy: Strategy,
    options: Sequence[Option],
    shape: Shape,
    rand: Callable[[], float],
    fresh: Freshness | None = None,
) -> list[Option]:
    if len(options) < 2 or strategy in ("fallback", "adaptive"):  # adaptive: the Router's AdaptiveBook
        return list(options)
    if strategy == "weighted":
        return weighted(options, rand)
    if strategy == "least_latency":
        return least_latency(options, shape.stream, rand, fresh)
    if strategy == "least_busy":
        return sorted(options, key=lambda o: o.load.in_flight)
    return cheapest(options, shape)


def weighted(options: Sequence[Option], rand: Callable[[], float]) -> list[Option]:
    """A weighted random order (each position drawn in proportion to the weights left):
    key ``u ** (1 / w)``, largest first (Efraimidis-Spirakis)."""
    keyed = [(rand() ** (1.0 / o.target.weight), i) for i, o in enumerate(options)]
    keyed.sort(reverse=True)
    return [options[i] for _, i in keyed]


def least_latency(
    options: Sequence[Option],
    stream: bool,
    rand: Callable[[], float] | None = None,
    fresh: Freshness | None = None,
) -> list[Option]:
    """Lowest moving-average latency first — time to first token for streams. A target without a
    sample yet, or whose estimate is older than ``fresh.max_age_s``, goes first, so every target
    gets measured; and a share ``fresh.refresh`` of requests goes first to the target measured
    longest ago, so a target that was slow and recovered is measured again (its estimate would
    otherwise stay frozen at the slow value, since the fastest target takes all the traffic)."""
    stale_before = fresh.now - fresh.max_age_s if fresh is not None else None

    def key(o: Option) -> float:
        load = o.load
        if stale_before is not None and (load.sampled_at is None or load.sampled_at < stale_before):
            return -1.0
        first, second = (load.ttft_ms, load.latency_ms) if stream else (load.latency_ms, load.ttft_ms)
        value = first if first is not None else second
        return value if value is not None else -1.0

    out = sorted(options, key=key)
    if fresh is not None and rand is not None and fresh.refresh > 0 and rand() < fresh.refresh:
        oldest = min(range(1, len(out)), key=lambda i: out[i].load.sampled_at or 0.0)
        out.insert(0, out.pop(oldest))
    return out


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
