"""Routing policy checks a schema cannot express: unknown models, fallback cycles, weights, routes.

Each failure is a :class:`ConfigError` naming the key's path, like every other policy error.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from sluice.config.model import Config, ModelConfig
from sluice.config.residency import Requirements, check_spec, requirements_allow, requirements_from
from sluice.config.routing import RouteConfig
from sluice.errors import ConfigError


def check_routing(config: Config, origin: str) -> None:
    for name, model in config.models.items():
        _check_targets(name, model, origin)
        _check_adaptive(config, name, model, origin)
        _check_model_names(config, model.fallback, f"$.models.{name}.fallback", origin)
        if name in model.fallback:
            raise ConfigError(
                f"{origin}: model '{name}' falls back to itself - at `$.models.{name}.fallback`"
            )
    _check_cycles(config, origin)
    names: set[str] = set()
    for i, route in enumerate(config.routes):
        path = f"$.routes[{i}]"
        if not route.name or route.name in names:
            what = "a route needs a name" if not route.name else f"duplicate route name '{route.name}'"
            raise ConfigError(f"{origin}: {what} - at `{path}.name`")
        names.add(route.name)
        _check_route(config, route, path, origin)
    _check_reachable(config.routes, origin)
    check_residency(config, origin)


def _fail(origin: str, message: str, path: str) -> ConfigError:
    return ConfigError(f"{origin}: {message} - at `{path}`")


def _check_targets(name: str, model: ModelConfig, origin: str) -> None:
    weights: list[float] = []
    for i, target in enumerate(model.targets):
        path = f"$.models.{name}.targets[{i}]"
        if target.weight is not None:
            if model.strategy != "weighted":
                raise _fail(origin, "weight only applies with strategy: weighted", f"{path}.weight")
            if not math.isfinite(target.weight) or target.weight <= 0:
                raise _fail(origin, "weight must be a positive number", f"{path}.weight")
        weights.append(target.weight if target.weight is not None else 1.0)
        if target.timeout_s is not None and target.timeout_s <= 0:
            raise _fail(origin, "must be positive", f"{path}.timeout_s")
        if target.max_input_tokens is not None and target.max_input_tokens <= 0:
            raise _fail(origin, "must be positive", f"{path}.max_input_tokens")
    if model.strategy == "weighted" and not math.isfinite(sum(weights)):
        raise _fail(origin, "weights do not add up to a finite total", f"$.models.{name}.targets")


def _check_model_names(config: Config, names: Iterable[str], path: str, origin: str) -> None:
    seen: set[str] = set()
    for j, model in enumerate(names):
        if model not in config.models:
            raise _fail(origin, f"unknown model '{model}'", f"{path}[{j}]")
        if model in seen:
            raise _fail(origin, f"model '{model}' is listed twice", f"{path}[{j}]")
        seen.add(model)


def _check_cycles(config: Config, origin: str) -> None:
    """A model's fallbacks, followed transitively, must never lead back to it."""
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            cycle = " → ".join([*trail[trail.index(name) :], name])
            raise _fail(origin, f"fallback cycle {cycle}", f"$.models.{trail[-1]}.fallback")
        if name in done:
            return
        for nxt in config.models[name].fallback:
            visit(nxt, [*trail, name])
        done.add(name)

    for name in config.models:
        visit(name, [])


def _check_route(config: Config, route: RouteConfig, path: str, origin: str) -> None:
    for model, at in _each(route.match.model, f"{path}.match.model"):
        if model not in config.models:
            raise _fail(origin, f"unknown model '{model}' (the route could never match)", at)
    for team, at in _each(route.match.team, f"{path}.match.team"):
        if team not in config.teams:
            raise _fail(origin, f"unknown team '{team}' (declare it under teams:)", at)
    if route.model is not None and route.complexity is not None:
        raise _fail(origin, "set either model or complexity, not both", f"{path}.complexity")
    if route.model is not None and route.model not in config.models:
        raise _fail(origin, f"unknown model '{route.model}'", f"{path}.model")
    if route.complexity is not None:
        for field in ("small", "large"):
            model = getattr(route.complexity, field)
            if model not in config.models:
                raise _fail(origin, f"unknown model '{model}'", f"{path}.complexity.{field}")
    _check_model_names(config, route.fallback, f"{path}.fallback", origin)
    if route.model is not None and route.model in route.fallback:
        raise _fail(origin, f"route model '{route.model}' falls back to itself", f"{path}.fallback")
    if route.shadow is not None and route.shadow.model not in config.models:
        raise _fail(origin, f"unknown model '{route.shadow.model}'", f"{path}.shadow.model")
    if route.rate_limit is not None and route.rate_limit.empty:
        raise _fail(origin, "a rate_limit needs rpm, tpm or concurrent", f"{path}.rate_limit")


def _each(value: str | list[str] | None, path: str) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(value, path)]
    return [(v, f"{path}[{j}]") for j, v in enumerate(value or ())]


def _check_reachable(routes: list[RouteConfig], origin: str) -> None:
    for i, route in enumerate(routes):
        m = route.match
        if (m.team, m.key, m.user, m.model, m.task, m.tags) == (None,) * 6 and i + 1 < len(routes):
            later = routes[i + 1].name
            raise _fail(
                origin,
                f"route '{later}' can never match: route '{route.name}' above it matches every request",
                f"$.routes[{i + 1}]",
            )


def check_residency(config: Config, origin: str) -> None:
    """Labels and ``require`` blocks are well formed, and every route's (and team's) requirements
    can be met by at least one target of the models it may serve."""
    for name, provider in config.providers.items():
        problem = check_spec(provider.labels, "labels")
        if problem:
            raise _fail(origin, problem, f"$.providers.{name}.labels")
    for name, team in config.teams.items():
        problem = check_spec(team.require, "require")
        if problem:
            raise _fail(origin, problem, f"$.teams.{name}.require")
        if team.require:
            models = team.models if team.models is not None else list(config.models)
            reqs = requirements_from(team.require, f"team '{name}'")
            if not any(_satisfiable(config, m, reqs) for m in models):
                raise _fail(
                    origin,
                    "no target of the team's models can meet its requirements",
                    f"$.teams.{name}.require",
                )
    for i, route in enumerate(config.routes):
        path = f"$.routes[{i}].require"
        problem = check_spec(route.require, "require")
        if problem:
            raise _fail(origin, problem, path)
        own = requirements_from(route.require, f"route '{route.name}'")
        for team_name, _ in _each(route.match.team, ""):
            matched = config.teams.get(team_name)
            team_reqs = requirements_from(matched.require if matched else {}, f"team '{team_name}'")
            _check_route_residency(config, route, team_reqs + own, path, origin)
        if route.match.team is None:
            _check_route_residency(config, route, own, path, origin)


def _check_route_residency(
    config: Config, route: RouteConfig, spec: Requirements, path: str, origin: str
) -> None:
    """Every model the route may serve first (its model or complexity choices, with their
    fallbacks) must reach at least one target meeting ``spec``; so must its shadow model."""
    if not spec:
        return
    firsts = [route.model] if route.model else []
    if route.complexity is not None:
        firsts = [route.complexity.small, route.complexity.large]
    for first in firsts:
        if not any(_satisfiable(config, m, spec) for m in _chain(config, route, first)):
            raise _fail(
                origin,
                f"route '{route.name}': no target of '{first}' or its fallbacks meets the requirements "
                f"{_describe(spec)}",
                path,
            )
    if not firsts:  # the route serves the requested model: at least one it may be asked for must do
        asked = (
            list(config.models) if route.match.model is None else [m for m, _ in _each(route.match.model, "")]
        )
        if not any(_satisfiable(config, m, spec) for first in asked for m in _chain(config, route, first)):
            raise _fail(
                origin,
                f"route '{route.name}': no target of any model meets the requirements {_describe(spec)}",
                path,
            )
    if route.shadow is not None and not _satisfiable(config, route.shadow.model, spec):
        raise _fail(
            origin,
            f"route '{route.name}': no target of shadow model '{route.shadow.model}' meets the "
            f"requirements {_describe(spec)}",
            path,
        )


def _chain(config: Config, route: RouteConfig, first: str) -> list[str]:
    return [first, *route.fallback, *_fallbacks(config, first)]


def _fallbacks(config: Config, model: str) -> list[str]:
    out: list[str] = []
    todo = list(config.models[model].fallback) if model in config.models else []
    while todo:
        name = todo.pop(0)
        if name not in out and name in config.models:
            out.append(name)
            todo.extend(config.models[name].fallback)
    return out


def _satisfiable(config: Config, model: str, reqs: Requirements) -> bool:
    m = config.models.get(model)
    return m is not None and any(
        requirements_allow(config.providers[t.provider].labels, reqs)
        for t in m.targets
        if t.provider in config.providers
    )


def _describe(spec: Requirements) -> str:
    return " and ".join(r.describe() for r in spec)


def _check_adaptive(config: Config, name: str, model: ModelConfig, origin: str) -> None:
    path = f"$.models.{name}"
    a = model.adaptive
    if model.strategy != "adaptive":
        if a is not None:
            raise _fail(origin, "adaptive only applies with strategy: adaptive", f"{path}.adaptive")
        return
    if a is None:
        raise _fail(origin, "strategy: adaptive needs adaptive: {metric: ...}", f"{path}.adaptive")
    metric = config.feedback.metrics.get(a.metric)
    if metric is None:
        raise _fail(
            origin,
            f"unknown metric '{a.metric}' (declare it under feedback.metrics)",
            f"{path}.adaptive.metric",
        )
    if metric.type == "float" and (metric.min is None or metric.max is None):
        raise _fail(
            origin, f"metric '{a.metric}' needs min and max to be optimised (values are scaled to 0..1)",
            f"{path}.adaptive.metric",
        )  # fmt: skip
    if a.min_share * len(model.targets) > 1:
        raise _fail(origin, "min_share times the number of targets exceeds 1", f"{path}.adaptive.min_share")
    if a.min_samples > a.memory:
        raise _fail(origin, "min_samples cannot exceed memory", f"{path}.adaptive.min_samples")
