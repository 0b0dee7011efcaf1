"""``strategy: adaptive``: traffic follows feedback, by discounted Thompson sampling.

Each feedback report on a metric is scaled to a quality ``x`` in 0..1 (a boolean is 1 or 0; a
float ``(v - min) / (max - min)``; flipped when the metric's ``optimize`` is ``min``) and counted
for the target that served the rated request: ``successes += x``, ``failures += 1 - x``. Before
each new report every target's counts of that metric are multiplied by ``1 - 1/memory``, so the
statistics remember about ``memory`` recent reports and a target rarely sent traffic grows
uncertain again instead of being judged forever on old evidence.

Ordering a model's targets for one request:

1. until every target has ``min_samples`` reports, a uniformly random order (explore evenly);
2. otherwise, with probability ``min_share * targets``, a uniformly random target goes first — so
   every target keeps at least ``min_share`` of the traffic and stays measured;
3. otherwise each target draws ``θ ~ Beta(1 + successes, 1 + failures)``, minus
   ``cost_weight * cost / max cost`` and ``latency_weight * latency / max latency``; the highest
   score goes first. The rest follow by score (the fallback order if the first fails).

Statistics are kept per (metric, provider, upstream model). A replica loads them from the feedback
table at start and re-reads new rows every few seconds, so every replica (sharing the store)
follows the same evidence; its own reports count at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sluice.config.adaptive import AdaptiveConfig
from sluice.config.feedback import FeedbackMetric
from sluice.config.model import Config
from sluice.routing.strategies import ASSUMED_OUTPUT_TOKENS, Option
from sluice.store.feedback import FeedbackRow

log = logging.getLogger("sluice.routing")
_SEEN_MAX = 200_000
_OVERLAP_S = 30.0
#: Prompt size assumed when the cost weight compares targets.
_COST_PROMPT_TOKENS = 500


@dataclass(slots=True)
class Arm:
    successes: float = 0.0
    failures: float = 0.0
    #: Reports counted (not discounted): compared with ``min_samples``.
    reports: int = 0

    @property
    def mean(self) -> float:
        return (1 + self.successes) / (2 + self.successes + self.failures)


class AdaptiveBook:
    """The statistics of every adaptive model's metric, and the ordering rule."""

    def __init__(self, config: Config, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()
        self._metrics: dict[str, FeedbackMetric] = dict(config.feedback.metrics)
        self.models: dict[str, AdaptiveConfig] = {
            n: m.adaptive for n, m in config.models.items() if m.strategy == "adaptive" and m.adaptive
        }
        memory: dict[str, int] = {}
        for a in self.models.values():
            memory[a.metric] = min(memory.get(a.metric, a.memory), a.memory)
        self._discount = {metric: 1.0 - 1.0 / m for metric, m in memory.items()}
        self._arms: dict[str, dict[tuple[str, str], Arm]] = {metric: {} for metric in memory}
        self._seen: OrderedDict[str, float] = OrderedDict()
        #: Newest feedback row time read from the store (``AdaptiveSync``).
        self.watermark = 0.0

    def arm(self, metric: str, provider: str, model: str) -> Arm:
        return self._arms.setdefault(metric, {}).setdefault((provider, model), Arm())

    def observe(self, row: FeedbackRow) -> bool:
        """Count one stored report (once: a row already counted is skipped). True if counted."""
        arms = self._arms.get(row.metric)
        metric = self._metrics.get(row.metric)
        if arms is None or metric is None or row.provider is None or row.target_model is None:
            return False
        if self._seen.get(row.id) == row.ts:
            return False
        self._seen[row.id] = row.ts
        self._seen.move_to_end(row.id)
        while len(self._seen) > _SEEN_MAX:
            self._seen.popitem(last=False)
        x = _quality(metric, row.value)
        keep = self._discount[row.metric]
        for a in arms.values():
            a.successes *= keep
            a.failures *= keep
        a = self.arm(row.metric, row.provider, row.target_model)
        a.successes += x
        a.failures += 1.0 - x
        a.reports += 1
        return True

    def order(self, model: str, options: Sequence[Option]) -> tuple[list[Option], str]:
        """The targets in the order to try them, and the rule that decided."""
        cfg = self.models[model]
        arms = [self.arm(cfg.metric, o.target.provider, o.target.model) for o in options]
        rng = self.rng
        short = [o for o, a in zip(options, arms, strict=True) if a.reports < cfg.min_samples]
        if short:
            out = list(options)
            rng.shuffle(out)
            return out, f"exploring evenly: {len(short)} target(s) below {cfg.min_samples} reports"
        if rng.random() < cfg.min_share * len(options):
            out = list(options)
            rng.shuffle(out)
            return out, f"minimum share ({cfg.min_share:g} each)"
        penalties = self._penalties(cfg, options)
        scored = [
            (rng.betavariate(1 + a.successes, 1 + a.failures) - p, i)
            for i, (a, p) in enumerate(zip(arms, penalties, strict=True))
        ]
        scored.sort(reverse=True)
        return [options[i] for _, i in scored], f"Thompson sampling on '{cfg.metric}'"

    def _penalties(self, cfg: AdaptiveConfig, options: Sequence[Option]) -> list[float]:
        out = [0.0] * len(options)
        if cfg.cost_weight:
            costs = [_cost(o) for o in options]
            top = max(costs)
            if top > 0:
                out = [p + cfg.cost_weight * c / top for p, c in zip(out, costs, strict=True)]
        if cfg.latency_weight:
            lats = [o.load.latency_ms or 0.0 for o in options]
            top = max(lats)
            if top > 0:
                out = [p + cfg.latency_weight * v / top for p, v in zip(out, lats, strict=True)]
        return out

    def shares(self, model: str, options: Sequence[Option], draws: int = 2000) -> list[float]:
        """Each target's current share of first attempts, estimated by drawing the rule."""
        wins = [0] * len(options)
        index = {id(o): i for i, o in enumerate(options)}
        for _ in range(draws):
            first, _why = self.order(model, options)
            wins[index[id(first[0])]] += 1
        return [w / draws for w in wins]

    def view(self, model: str, options: Sequence[Option]) -> dict[str, Any]:
        cfg = self.models[model]
        shares = self.shares(model, options, 1000)
        arms = [self.arm(cfg.metric, o.target.provider, o.target.model) for o in options]
        short = sum(a.reports < cfg.min_samples for a in arms)
        why = (
            f"exploring evenly: {short} target(s) below {cfg.min_samples} reports"
            if short
            else f"Thompson sampling on '{cfg.metric}', each target at least {cfg.min_share:g}"
        )
        targets = []
        for o, share in zip(options, shares, strict=True):
            a = self.arm(cfg.metric, o.target.provider, o.target.model)
            targets.append({
                "provider": o.target.provider, "model": o.target.model, "share": round(share, 3),
                "mean": round(a.mean, 4), "reports": a.reports,
                "evidence": round(a.successes + a.failures, 2),
            })  # fmt: skip
        return {"model": model, "metric": cfg.metric, "rule": why, "min_samples": cfg.min_samples,
                "min_share": cfg.min_share, "memory": cfg.memory, "targets": targets}  # fmt: skip


def _quality(metric: FeedbackMetric, value: float) -> float:
    if metric.type == "boolean":
        x = 1.0 if value >= 0.5 else 0.0
    else:
        lo, hi = metric.min or 0.0, metric.max or 1.0
        x = min(1.0, max(0.0, (value - lo) / (hi - lo))) if hi > lo else 0.0
    return x if metric.optimize == "max" else 1.0 - x


def _cost(o: Option) -> float:
    if o.price is None:
        return 0.0
    c: Decimal = (
        _COST_PROMPT_TOKENS * o.price.input_per_token + ASSUMED_OUTPUT_TOKENS * o.price.output_per_token
    )
    return float(c)


class AdaptiveSync:
    """Loads the feedback table into the book at start, then reads new rows every ``interval_s``
    (how replicas sharing a store share the statistics)."""

    def __init__(self, store: Any, book: AdaptiveBook, interval_s: float = 5.0) -> None:
        self._store = store
        self._book = book
        self._interval = interval_s
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if not self._book.models:
            return
        await self.refresh()
        self._task = asyncio.create_task(self._loop(), name="sluice-adaptive-sync")

    async def refresh(self) -> int:
        """Count the rows stored since the last read. Reads overlap by ``_OVERLAP_S`` (a row
        another replica stamped a little earlier may land late); counted rows are skipped."""
        book = self._book
        since = book.watermark - _OVERLAP_S if book.watermark else None
        counted = 0
        for metric in sorted({a.metric for a in book.models.values()}):
            rows = await self._store.feedback_rows(metric, since)
            counted += sum(book.observe(r) for r in rows)
            book.watermark = max([book.watermark, *(r.ts for r in rows)])
        return counted

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:  # the store may be down: the next round retries
                log.warning("adaptive: could not read new feedback; keeping the current statistics")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
