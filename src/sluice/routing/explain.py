"""``sluice routes explain`` and ``sluice shadow report``: what routing would do, and what shadows saw.

Pure functions over the policy (and, for the report, the stored shadow records); the CLI prints them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sluice.config.model import Config
from sluice.config.residency import Requirements, requirements_from, unmet
from sluice.config.routing import RouteConfig
from sluice.pricing import PriceBook
from sluice.routing.adaptive import AdaptiveBook
from sluice.routing.routes import Facts, Plan, RouteTable
from sluice.routing.strategies import ASSUMED_OUTPUT_TOKENS, Option, Shape, cheapest, make_option
from sluice.store.records import ShadowRow

#: The prompt size ``explain`` assumes when it orders a ``cheapest`` model's targets.
EXPLAIN_PROMPT_TOKENS = 500

_LIVE = {
    "least_latency": "re-ordered per request: lowest measured latency first (a share refreshes the stalest)",
    "least_busy": "re-ordered per request: fewest requests in flight first",
}


def explain(
    config: Config,
    facts: Facts,
    prompt_tokens: int = EXPLAIN_PROMPT_TOKENS,
    book: AdaptiveBook | None = None,
) -> dict[str, Any]:
    """The route a request with these facts gets, why, and each model and target it may be sent to,
    in the order its strategy would try them. ``book``: the feedback statistics of ``adaptive``
    models (loaded from the store by the CLI), for their current shares."""
    table = RouteTable(config.routes, config.models, config.routing, config.server.request_timeout_s)
    if facts.model not in config.models:
        raise ValueError(f"model '{facts.model}' does not exist in the policy")
    matched = table.match(facts)
    route_cfg = matched.cfg if matched is not None else None
    name, model, reason = table.choose(facts, None)
    ctx = _Context(
        config, _requirements(config, facts.team, route_cfg), prompt_tokens, book or AdaptiveBook(config)
    )
    out: dict[str, Any] = {"route": name, "reason": reason}
    if route_cfg is not None and route_cfg.complexity is not None:
        c = route_cfg.complexity
        out["reason"] = f"{matched.reason if matched else ''}; complexity picks small or large by the prompt"
        out["complexity"] = {
            "small": c.small, "large": c.large, "max_small_tokens": c.max_small_tokens,
            "tools_to_large": c.tools_to_large, "max_small_messages": c.max_small_messages,
        }  # fmt: skip
        out["plans"] = {
            "small": _plan(ctx, table.plan(name, c.small)),
            "large": _plan(ctx, table.plan(name, c.large)),
        }
    else:
        out["plans"] = {"": _plan(ctx, table.plan(name, model))}
    out["require"] = [r.describe() for r in ctx.reqs]
    out.update(_route_extras(route_cfg, config))
    return out


@dataclass(frozen=True)
class _Context:
    config: Config
    reqs: Requirements
    prompt_tokens: int
    book: AdaptiveBook
    prices: PriceBook = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "prices", PriceBook.load(self.config.prices))


class _NoLoad:
    in_flight = 0
    latency_ms = None
    ttft_ms = None
    sampled_at = None


def _requirements(config: Config, team: str | None, route: RouteConfig | None) -> Requirements:
    t = config.teams.get(team) if team is not None else None
    reqs = requirements_from(t.require, f"team '{team}'") if t is not None else ()
    if route is not None:
        reqs += requirements_from(route.require, f"route '{route.name}'")
    return reqs


def _ordered(ctx: _Context, name: str) -> tuple[list[Option], str, dict[tuple[str, str], dict[str, Any]]]:
    """A model's targets in the order its strategy uses, how it decides, and per target what the
    strategy knows (adaptive: the current share, mean quality and reports)."""
    m = ctx.config.models[name]
    options = [
        make_option(t, ctx.prices, ctx.config.providers[t.provider].type, _NoLoad()) for t in m.targets
    ]
    if m.strategy == "cheapest":
        shape = Shape(prompt_tokens=ctx.prompt_tokens, output_tokens=ASSUMED_OUTPUT_TOKENS)
        why = f"cheapest first for ~{ctx.prompt_tokens} prompt + {ASSUMED_OUTPUT_TOKENS} output tokens"
        return cheapest(options, shape), why, {}
    if m.strategy == "adaptive":
        view = ctx.book.view(name, options)
        known = {(t["provider"], t["model"]): t for t in view["targets"]}
        ranked = sorted(options, key=lambda o: -known[(o.target.provider, o.target.model)]["share"])
        return ranked, str(view["rule"]), known
    if m.strategy == "weighted":
        total = sum(o.target.weight for o in options)
        ranked = sorted(options, key=lambda o: -o.target.weight)
        return ranked, f"random order, each target first in proportion to its weight (of {total:g})", {}
    return options, _LIVE.get(m.strategy, "in policy order"), {}


def _plan(ctx: _Context, plan: Plan) -> dict[str, Any]:
    models = []
    for name in plan.models:
        m = ctx.config.models[name]
        options, why, known = _ordered(ctx, name)
        targets = []
        for o in options:
            t = o.target
            miss = unmet(ctx.config.providers[t.provider].labels, ctx.reqs)
            entry = {
                "provider": t.provider, "model": t.model,
                "weight": next(c.weight for c in m.targets if (c.provider, c.model) == (t.provider, t.model)),
                "timeout_s": t.timeout_s, "max_input_tokens": o.window,
                "excluded": miss.describe() if miss is not None else None,
            }  # fmt: skip
            if m.strategy == "weighted":
                entry["share"] = round(t.weight / sum(x.target.weight for x in options), 4)
            k = known.get((t.provider, t.model))
            if k is not None:
                entry.update(share=k["share"], mean=k["mean"], reports=k["reports"])
            if m.strategy == "cheapest" and o.price is not None:
                entry["est_cost_usd"] = float(
                    ctx.prompt_tokens * o.price.input_per_token
                    + ASSUMED_OUTPUT_TOKENS * o.price.output_per_token
                )
            targets.append(entry)
        models.append({"model": name, "strategy": m.strategy, "order": why, "targets": targets})
    r = plan.retry
    return {
        "models": models,
        "max_attempts": r.max_attempts, "retries": r.retries, "retry_on": sorted(plan.retry_on),
        "backoff": {"base_s": r.backoff.base_s, "max_s": r.backoff.max_s, "multiplier": r.backoff.multiplier,
                    "jitter": r.backoff.jitter},
        "max_retry_after_s": r.max_retry_after_s, "fallback_on": sorted(plan.fallback_on),
        "timeout_s": plan.timeout_s, "first_token_timeout_s": plan.first_token_timeout_s,
    }  # fmt: skip


def _route_extras(route: RouteConfig | None, config: Config) -> dict[str, Any]:
    if route is None:
        return {"rate_limit": None, "cache": None, "guardrails": [], "shadow": None}
    rl = route.rate_limit
    return {
        "rate_limit": {"rpm": rl.rpm, "tpm": rl.tpm, "concurrent": rl.concurrent} if rl is not None else None,
        "cache": _cache_view(route, config),
        "guardrails": list(route.guardrails),
        "shadow": {"model": route.shadow.model, "percent": route.shadow.percent} if route.shadow else None,
    }


def _cache_view(route: RouteConfig, config: Config) -> dict[str, Any] | None:
    c = route.cache
    if c is None:
        return None
    sem = config.cache.semantic
    semantic = c.semantic and sem.enabled
    return {
        "ttl_s": c.ttl_s if c.ttl_s is not None else config.cache.ttl_s, "version": c.version,
        "semantic": semantic, "threshold": (c.threshold or sem.threshold) if semantic else None,
        "scope": sem.scope, "backend": config.cache.backend,
    }  # fmt: skip


def explain_text(result: dict[str, Any]) -> str:
    lines = [f"route:      {result['route'] or '(none)'}", f"why:        {result['reason']}"]
    if "complexity" in result:
        c = result["complexity"]
        lines.append(
            f"complexity: small '{c['small']}' up to ~{c['max_small_tokens']} prompt tokens"
            + (", tools go large" if c["tools_to_large"] else "") + f"; else large '{c['large']}'"
        )  # fmt: skip
    for label, plan in result["plans"].items():
        lines.append(f"{label + ': ' if label else ''}targets, in order (breakers and strategy permitting):")
        n = 0
        for m in plan["models"]:
            lines.append(f"  model '{m['model']}' ({m['strategy']}): {m['order']}")
            for t in m["targets"]:
                if t["excluded"]:
                    lines.append(f"  -  {t['provider']}/{t['model']}  never used: not {t['excluded']}")
                    continue
                n += 1
                keys = ("weight", "share", "mean", "reports", "est_cost_usd", "timeout_s", "max_input_tokens")
                extra = "".join(f", {k} {t[k]}" for k in keys if t.get(k) is not None)
                lines.append(
                    f"  {n}. {t['provider']}/{t['model']}  (model '{m['model']}', {m['strategy']}{extra})"
                )
        lines.append(
            f"  attempts ≤ {plan['max_attempts']}, {plan['retries']} retry round(s) on {', '.join(plan['retry_on'])};"
            f" falls back on {', '.join(plan['fallback_on']) or 'nothing'}"
        )
        first = plan["first_token_timeout_s"]
        lines.append(
            f"  request timeout {plan['timeout_s']:g}s" + (f", first token {first:g}s" if first else "")
        )
    if result.get("require"):
        lines.append(f"require:    {'; '.join(result['require'])}")
    for key in ("rate_limit", "cache", "guardrails", "shadow"):
        value = result[key]
        if value:
            lines.append(f"{key + ':':<11} {json.dumps(value)}")
    return "\n".join(lines)


@dataclass
class _Group:
    calls: int = 0
    shadow_errors: int = 0
    primary_errors: int = 0
    similarity: list[float] = field(default_factory=list)
    latency: tuple[list[float], list[float]] = field(default_factory=lambda: ([], []))
    tokens: list[int] = field(default_factory=lambda: [0, 0])
    cost: list[float] = field(default_factory=lambda: [0.0, 0.0])


def shadow_report(rows: list[ShadowRow]) -> list[dict[str, Any]]:
    """Shadow comparisons grouped by (route, primary model, shadow model)."""
    groups: dict[tuple[str, str, str], _Group] = {}
    for row in rows:
        cmp = json.loads(row.comparison) if row.comparison else {}
        p, s = cmp.get("primary") or {}, cmp.get("shadow") or {}
        # Grouped by the policy models (``routed_model``): a failed call has no served model, and
        # older rows without it fall back to the served one.
        key = (
            row.route or "-",
            str(p.get("routed_model") or p.get("model")),
            str(s.get("routed_model") or s.get("model")),
        )
        g = groups.setdefault(key, _Group())
        g.calls += 1
        g.shadow_errors += s.get("error") is not None
        g.primary_errors += p.get("error") is not None
        if cmp.get("similarity") is not None:
            g.similarity.append(float(cmp["similarity"]))
        for i, side in enumerate((p, s)):
            if side.get("error") is None:
                g.latency[i].append(float(side.get("latency_ms") or 0.0))
            g.tokens[i] += int(side.get("prompt_tokens") or 0) + int(side.get("completion_tokens") or 0)
            g.cost[i] += float(side.get("cost_usd") or 0.0)
    return [
        {"route": route, "primary_model": pm, "shadow_model": sm, "calls": g.calls,
         "shadow_errors": g.shadow_errors, "primary_errors": g.primary_errors,
         "similarity": _mean(g.similarity, 4), "primary_latency_ms": _mean(g.latency[0], 1),
         "shadow_latency_ms": _mean(g.latency[1], 1), "primary_tokens": g.tokens[0], "shadow_tokens": g.tokens[1],
         "primary_cost_usd": round(g.cost[0], 8), "shadow_cost_usd": round(g.cost[1], 8)}
        for (route, pm, sm), g in sorted(groups.items())
    ]  # fmt: skip


def _mean(values: list[float], digits: int) -> float | None:
    return round(sum(values) / len(values), digits) if values else None
