"""Routing policy errors are caught at load, each naming its path."""

from __future__ import annotations

from typing import Any

import pytest

from sluice.config import parse_config
from sluice.errors import ConfigError


def _policy(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "providers": {"p": {"type": "openai"}},
        "models": {
            "small": {"targets": [{"provider": "p", "model": "s"}]},
            "large": {"targets": [{"provider": "p", "model": "l"}]},
        },
        "teams": {"billing": {}},
    }
    for key, value in extra.items():
        if key == "models":
            base["models"].update(value)
        else:
            base[key] = value
    return base


def test_a_full_routing_policy_loads() -> None:
    config = parse_config(
        _policy(
            models={
                "pool": {
                    "strategy": "weighted",
                    "targets": [
                        {"provider": "p", "model": "a", "weight": 3},
                        {"provider": "p", "model": "b"},
                    ],
                    "fallback": ["large"],
                }
            },
            routes=[
                {
                    "name": "sum",
                    "match": {"task": "summarize", "tags": ["x"]},
                    "model": "small",
                    "fallback": ["large"],
                    "rate_limit": {"rpm": 600},
                    "cache": {"ttl_s": 3600},
                    "retry": {"max_attempts": 2, "retries": 0},
                    "fallback_on": ["rate_limited", "server"],
                },
                {
                    "name": "billing",
                    "match": {"team": ["billing"]},
                    "guardrails": ["pii-redact"],
                    "complexity": {"small": "small", "large": "large", "max_small_tokens": 50},
                },
                {"name": "shadow", "match": {"model": "small"}, "shadow": {"model": "pool", "percent": 5}},
            ],
            routing={"retry": {"retries": 2, "backoff": {"base_s": 0.1}}, "breaker": {"failures": 3}},
            guardrails={"pii-redact": {"type": "pii", "action": "redact"}},
        )
    )
    assert [r.name for r in config.routes] == ["sum", "billing", "shadow"]
    assert config.routes[0].rate_limit is not None and config.routes[0].rate_limit.rpm == 600
    assert config.routes[1].guardrails == ["pii-redact"]
    assert config.routing.breaker.failures == 3


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"routes": [{"name": "r", "model": "ghost"}]}, "unknown model 'ghost' - at `$.routes[0].model`"),
        ({"routes": [{"name": "r", "fallback": ["small", "ghost"]}]}, "$.routes[0].fallback[1]"),
        ({"routes": [{"name": "r", "match": {"model": "ghost"}}]}, "$.routes[0].match.model"),
        ({"routes": [{"name": "r", "match": {"team": ["nope"]}}]}, "unknown team 'nope'"),
        ({"routes": [{"name": "r", "shadow": {"model": "ghost", "percent": 5}}]}, "$.routes[0].shadow.model"),
        ({"routes": [{"name": "r", "shadow": {"model": "small", "percent": 0}}]}, "percent"),
        ({"routes": [{"name": "r", "model": "small", "fallback": ["small"]}]}, "falls back to itself"),
        ({"routes": [{"name": "r", "model": "small", "complexity": {"small": "small", "large": "large"}}]},
         "either model or complexity"),
        ({"routes": [{"name": "r", "complexity": {"small": "small", "large": "ghost"}}]},
         "$.routes[0].complexity.large"),
        ({"routes": [{"name": "r"}, {"name": "r", "match": {"task": "x"}}]}, "duplicate route name 'r'"),
        ({"routes": [{"name": "all"}, {"name": "never", "match": {"task": "x"}}]}, "route 'never' can never match"),
        ({"routes": [{"name": "r", "fallback_on": ["bad_request"]}]}, "$.routes[0].fallback_on[0]"),
        ({"routes": [{"name": "r", "retry": {"retry_on": ["auth"]}}]}, "$.routes[0].retry.retry_on[0]"),
        ({"routes": [{"name": "r", "retry": {"max_attempts": 0}}]}, "$.routes[0].retry.max_attempts"),
        ({"routes": [{"name": "r", "rate_limit": {}}]}, "needs rpm, tpm or concurrent"),
        ({"routes": [{"name": "r", "matches": {}}]}, "matches"),
        ({"models": {"a": {"targets": [{"provider": "p", "model": "a"}], "fallback": ["b"]},
                     "b": {"targets": [{"provider": "p", "model": "b"}], "fallback": ["a"]}}},
         "fallback cycle"),
        ({"models": {"a": {"targets": [{"provider": "p", "model": "a"}], "fallback": ["a"]}}}, "falls back to itself"),
        ({"models": {"a": {"targets": [{"provider": "p", "model": "a"}], "fallback": ["ghost"]}}},
         "$.models.a.fallback[0]"),
        ({"models": {"w": {"strategy": "weighted", "targets": [{"provider": "p", "model": "a", "weight": 0}]}}},
         "weight must be a positive number - at `$.models.w.targets[0].weight`"),
        ({"models": {"w": {"strategy": "weighted", "targets": [{"provider": "p", "model": "a", "weight": -2}]}}},
         "positive"),
        ({"models": {"w": {"strategy": "weighted", "targets": [{"provider": "p", "model": "a", "weight": 1e308},
                                                               {"provider": "p", "model": "b", "weight": 1e308}]}}},
         "do not add up"),
        ({"models": {"f": {"targets": [{"provider": "p", "model": "a", "weight": 2}]}}},
         "weight only applies with strategy: weighted"),
        ({"models": {"f": {"strategy": "fastest", "targets": [{"provider": "p", "model": "a"}]}}}, "strategy"),
        ({"routing": {"breaker": {"error_ratio": 1.5}}}, "$.routing.breaker.error_ratio"),
        ({"routing": {"retry_budget": {"ratio": 2}}}, "$.routing.retry_budget.ratio"),
    ],
)  # fmt: skip
def test_policy_errors_name_the_path(extra: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_policy(**extra))
    assert needle in err.value.message
