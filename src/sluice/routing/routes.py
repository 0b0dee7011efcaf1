"""Route matching (``routes:`` top-down, first match wins) and the plan a matched route makes.

Matching reads the team, key, end user, requested model, task and tags of a request; conditions
are compiled to frozensets once, so matching a request is a handful of set lookups.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sluice.config.model import ModelConfig
from sluice.config.routing import (
    ComplexityConfig,
    FallbackKind,
    RetryConfig,
    RouteConfig,
    RoutingConfig,
    ShadowConfig,
    as_tuple,
)
from sluice.routing.strategies import estimate_prompt_tokens
from sluice.schema.chat import ChatRequest

_FIELDS = ("team", "key", "user", "model", "task")


#: The routing reason when no route matches (or the policy has none).
NO_MATCH = "no route matched: serving the requested model"


@dataclass(slots=True)  # made per request: frozen would cost a setattr per field
class Facts:
    """What a request is matched on."""

    team: str | None = None
    key: str | None = None
    user: str | None = None
    model: str | None = None
    task: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Plan:
    """How one request is served: the models to try in order and the resilience settings."""

    route: str | None
    #: The chosen model, then the route's fallbacks, then the model's own; no repeats.
    models: tuple[str, ...]
    fallback_on: frozenset[FallbackKind]
    retry: RetryConfig
    retry_on: frozenset[str]
    timeout_s: float
    first_token_timeout_s: float | None
    shadow: ShadowConfig | None


class CompiledRoute:
    __slots__ = ("cfg", "conditions", "name", "reason", "tags")

    def __init__(self, cfg: RouteConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name
        conds: list[tuple[str, frozenset[str]]] = []
        for field in _FIELDS:
            values = as_tuple(getattr(cfg.match, field))
            if values is not None:
                conds.append((field, frozenset(values)))
        self.conditions = tuple(conds)
        self.tags = frozenset(cfg.match.tags or ())
        said = [f"{f}={'|'.join(sorted(v))}" for f, v in conds]
        if self.tags:
            said.append(f"tags⊇{','.join(sorted(self.tags))}")
        self.reason = f"route '{cfg.name}' matched ({', '.join(said) or 'every request'})"

    def matches(self, facts: Facts) -> bool:
        for field, accepted in self.conditions:
            if getattr(facts, field) not in accepted:
                return False
        return not self.tags or self.tags.issubset(facts.tags)


class RouteTable:
    def __init__(
        self,
        routes: list[RouteConfig],
        models: Mapping[str, ModelConfig],
        routing: RoutingConfig,
        request_timeout_s: float,
    ) -> None:
        self._routes = tuple(CompiledRoute(r) for r in routes)
        self._by_name = {r.name: r for r in self._routes}
        self._models = models
        self._routing = routing
        self._request_timeout_s = request_timeout_s
        self._plans: dict[tuple[str | None, str], Plan] = {}

    @property
    def routes(self) -> tuple[CompiledRoute, ...]:
        return self._routes

    def match(self, facts: Facts) -> CompiledRoute | None:
        for route in self._routes:
            if route.matches(facts):
                return route
        return None

    def choose(self, facts: Facts, chat: ChatRequest | None) -> tuple[str | None, str, str]:
        """The route (name or None), the model it serves, and why."""
        route = self.match(facts)
        requested = facts.model or ""
        if route is None:
            return None, requested, NO_MATCH
        cfg = route.cfg
        if cfg.complexity is not None and chat is not None:
            model, why = complexity_choice(cfg.complexity, chat)
            return route.name, model, f"{route.reason}; {why}"
        if cfg.model is not None:
            return route.name, cfg.model, f"{route.reason}; serves '{cfg.model}'"
        return route.name, requested, f"{route.reason}; serves the requested model"

    def plan(self, route_name: str | None, model: str) -> Plan:
        key = (route_name, model)
        plan = self._plans.get(key)
        if plan is None:
            route = self._by_name.get(route_name) if route_name is not None else None
            plan = self._make_plan(route.cfg if route is not None else None, model)
            if len(self._plans) < 100_000:
                self._plans[key] = plan
        return plan

    def _make_plan(self, route: RouteConfig | None, model: str) -> Plan:
        d = self._routing
        retry = route.retry if route is not None and route.retry is not None else d.retry
        fallback_on = (
            route.fallback_on if route is not None and route.fallback_on is not None else d.fallback_on
        )
        first = d.first_token_timeout_s
        if route is not None and route.first_token_timeout_s is not None:
            first = route.first_token_timeout_s
        return Plan(
            route=route.name if route is not None else None,
            models=self.chain(model, route.fallback if route is not None else ()),
            fallback_on=frozenset(fallback_on),
            retry=retry,
            retry_on=frozenset(retry.retry_on),
            timeout_s=route.timeout_s if route is not None and route.timeout_s else self._request_timeout_s,
            first_token_timeout_s=first,
            shadow=route.shadow if route is not None else None,
        )

    def chain(self, model: str, route_fallback: list[str] | tuple[str, ...]) -> tuple[str, ...]:
        """``model``, then the route's fallbacks, then the model's own — each followed by its own
        fallbacks, depth first, first occurrence wins (the policy check refused cycles)."""
        models = self._models
        if model not in models:
            return ()
        out = [model]

        def add(name: str) -> None:
            if name in out or name not in models:
                return
            out.append(name)
            for nxt in models[name].fallback:
                add(nxt)

        for name in (*route_fallback, *models[model].fallback):
            add(name)
        return tuple(out)


def complexity_choice(cfg: ComplexityConfig, chat: ChatRequest) -> tuple[str, str]:
    """Small or large model, and the rule that decided."""
    if cfg.tools_to_large and chat.tools and chat.tool_choice != "none":
        return cfg.large, f"complexity: tools offered → large '{cfg.large}'"
    if cfg.max_small_messages is not None and len(chat.messages) > cfg.max_small_messages:
        why = f"{len(chat.messages)} messages > {cfg.max_small_messages}"
        return cfg.large, f"complexity: {why} → large '{cfg.large}'"
    tokens = estimate_prompt_tokens(chat)
    if tokens > cfg.max_small_tokens:
        return (
            cfg.large,
            f"complexity: ~{tokens} prompt tokens > {cfg.max_small_tokens} → large '{cfg.large}'",
        )
    return cfg.small, f"complexity: ~{tokens} prompt tokens ≤ {cfg.max_small_tokens} → small '{cfg.small}'"
