"""``sluice routes explain`` and ``sluice shadow report``: what routing would do, and what shadows saw.

Pure functions over the policy (and, for the report, the stored shadow records); the CLI prints them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sluice.config.model import Config
from sluice.config.routing import RouteConfig
from sluice.routing.routes import Facts, Plan, RouteTable
from sluice.store.records import ShadowRow


def explain(config: Config, facts: Facts) -> dict[str, Any]:
    """The route a request with these facts gets, why, and each model and target it may be sent to."""
    table = RouteTable(config.routes, config.models, config.routing, config.server.request_timeout_s)
    if facts.model not in config.models:
        raise ValueError(f"model '{facts.model}' does not exist in the policy")
    matched = table.match(facts)
    route_cfg = matched.cfg if matched is not None else None
    name, model, reason = table.choose(facts, None)
    out: dict[str, Any] = {"route": name, "reason": reason}
    if route_cfg is not None and route_cfg.complexity is not None:
        c = route_cfg.complexity
        out["reason"] = f"{matched.reason if matched else ''}; complexity picks small or large by the prompt"
        out["complexity"] = {
            "small": c.small, "large": c.large, "max_small_tokens": c.max_small_tokens,
            "tools_to_large": c.tools_to_large, "max_small_messages": c.max_small_messages,
        }  # fmt: skip
        out["plans"] = {
            "small": _plan(config, table.plan(name, c.small)),
            "large": _plan(config, table.plan(name, c.large)),
        }
    else:
        out["plans"] = {"": _plan(config, table.plan(name, model))}
    out.update(_route_extras(route_cfg, config))
    return out


def _plan(config: Config, plan: Plan) -> dict[str, Any]:
    models = []
    for name in plan.models:
        m = config.models[name]
        targets = [
            {"provider": t.provider, "model": t.model, "weight": t.weight, "timeout_s": t.timeout_s,
             "max_input_tokens": t.max_input_tokens}
            for t in m.targets
        ]  # fmt: skip
        models.append({"model": name, "strategy": m.strategy, "targets": targets})
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
            for t in m["targets"]:
                n += 1
                extra = "".join(
                    f", {k} {t[k]}" for k in ("weight", "timeout_s", "max_input_tokens") if t[k] is not None
                )
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
        g = groups.setdefault((row.route or "-", str(p.get("model")), str(s.get("model"))), _Group())
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
