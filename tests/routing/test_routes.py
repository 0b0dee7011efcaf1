"""Route matching: top-down, first match wins; the plan a route makes."""

from __future__ import annotations

from typing import Any

from sluice.config import parse_config
from sluice.config.model import Config
from sluice.routing.routes import Facts, RouteTable
from sluice.schema.chat import ChatRequest, FunctionDef, Message, Tool


def _config(routes: list[dict[str, Any]], **extra: Any) -> Config:
    models = {
        name: {"targets": [{"provider": "p", "model": name}]}
        for name in ("mini", "haiku", "sonnet", "opus", "llama")
    }
    models["haiku"]["fallback"] = ["opus"]
    return parse_config(
        {
            "providers": {"p": {"type": "openai"}},
            "models": models,
            "teams": {"billing": {}, "search": {}},
            "routes": routes,
            **extra,
        }
    )


def _table(config: Config) -> RouteTable:
    return RouteTable(config.routes, config.models, config.routing, config.server.request_timeout_s)


ROUTES = [
    {"name": "summaries", "match": {"task": "summarize"}, "model": "mini", "fallback": ["haiku"]},
    {"name": "billing", "match": {"team": "billing", "model": ["sonnet", "opus"]}, "model": "sonnet",
     "timeout_s": 30, "retry": {"max_attempts": 2}, "fallback_on": ["server"]},
    {"name": "tagged", "match": {"tags": ["batch", "eval"], "user": ["u1", "u2"]}, "model": "llama"},
    {"name": "key", "match": {"key": "key_1"}},
]  # fmt: skip


def test_first_match_wins_on_every_condition() -> None:
    table = _table(_config(ROUTES))
    assert table.choose(Facts(team="billing", model="sonnet", task="summarize"), None)[:2] == (
        "summaries",
        "mini",
    )
    assert table.choose(Facts(team="billing", model="opus"), None)[:2] == ("billing", "sonnet")
    assert table.choose(Facts(team="billing", model="mini"), None)[:2] == (None, "mini")
    assert table.choose(Facts(user="u2", tags=("eval", "batch", "x")), None)[:2] == ("tagged", "llama")
    assert table.choose(Facts(user="u2", tags=("eval",), model="mini"), None)[:2] == (None, "mini")
    assert table.choose(Facts(key="key_1", model="haiku"), None)[:2] == ("key", "haiku")


def test_reason_names_the_route_and_conditions() -> None:
    table = _table(_config(ROUTES))
    _, _, why = table.choose(Facts(team="billing", model="opus"), None)
    assert why == "route 'billing' matched (team=billing, model=opus|sonnet); serves 'sonnet'"
    assert table.choose(Facts(model="mini"), None)[2] == "no route matched: serving the requested model"


def test_plan_chains_fallbacks_and_takes_route_settings() -> None:
    table = _table(_config(ROUTES, routing={"retry": {"max_attempts": 5}}))
    plan = table.plan("summaries", "mini")
    assert plan.models == ("mini", "haiku", "opus"), "route fallback, then the fallback model's own"
    assert plan.retry.max_attempts == 5 and plan.timeout_s == 600
    billing = table.plan("billing", "sonnet")
    assert (billing.timeout_s, billing.retry.max_attempts, billing.fallback_on) == (
        30,
        2,
        frozenset({"server"}),
    )
    assert table.plan(None, "haiku").models == ("haiku", "opus")
    assert table.plan("summaries", "mini") is plan, "plans are cached"


def test_complexity_routes_by_size_and_tools() -> None:
    config = _config([
        {"name": "auto", "match": {"model": "mini"}, "complexity": {
            "small": "mini", "large": "opus", "max_small_tokens": 100, "max_small_messages": 3}},
    ])  # fmt: skip
    table = _table(config)
    short = ChatRequest(model="mini", messages=[Message(role="user", content="hi")])
    long = ChatRequest(model="mini", messages=[Message(role="user", content="word " * 200)])
    tools = ChatRequest(model="mini", messages=short.messages, tools=[Tool(function=FunctionDef(name="f"))])
    chatty = ChatRequest(model="mini", messages=short.messages * 4)
    facts = Facts(model="mini")
    assert table.choose(facts, short)[1] == "mini"
    route, model, why = table.choose(facts, long)
    assert (route, model) == ("auto", "opus") and "~254 prompt tokens > 100" in why
    assert table.choose(facts, tools)[1] == "opus" and "tools" in table.choose(facts, tools)[2]
    assert table.choose(facts, chatty)[1] == "opus"
