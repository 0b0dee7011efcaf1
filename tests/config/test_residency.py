"""Residency labels and requirements: the rule, the request header, and the policy checks."""

from __future__ import annotations

from typing import Any

import pytest

from sluice.config import parse_config
from sluice.config.residency import (
    parse_request_requirements,
    requirements_allow,
    requirements_from,
)
from sluice.errors import BadRequest, ConfigError


def test_every_requirement_must_hold_and_any_listed_value_satisfies_one() -> None:
    labels = {"region": "eu", "compliance": ["self-hosted", "hipaa"]}
    assert requirements_allow(labels, requirements_from({"region": ["eu", "us"]}, "team"))
    assert requirements_allow(labels, requirements_from({"compliance": "hipaa", "region": "eu"}, "team"))
    assert not requirements_allow(labels, requirements_from({"region": ["us"]}, "team"))
    assert not requirements_allow(labels, requirements_from({"tier": ["gold"]}, "team")), "missing label"
    assert not requirements_allow({}, requirements_from({"region": "eu"}, "route"))
    assert requirements_allow({}, ()), "no requirement: anything goes"
    both = requirements_from({"region": ["eu", "us"]}, "team") + parse_request_requirements("region=us")
    assert not requirements_allow(labels, both), "a request narrows; it can never widen"


def test_request_header_syntax() -> None:
    [a, b] = parse_request_requirements("region=eu|us; compliance=hipaa")
    assert (a.name, a.accepted, b.name, b.accepted) == ("region", {"eu", "us"}, "compliance", {"hipaa"})
    assert parse_request_requirements("") == () and parse_request_requirements(None) == ()
    for bad in ("region", "region=", "=eu", "Region!=eu", "x" * 2000):
        with pytest.raises(BadRequest, match="x-sluice-require"):
            parse_request_requirements(bad)


def _policy(**extra: Any) -> dict[str, Any]:
    return {
        "providers": {
            "public": {"type": "openai", "base_url": "http://127.0.0.1:9/v1", "labels": {"region": "us"}},
            "gpu": {
                "type": "openai",
                "base_url": "http://127.0.0.1:9/v1",
                "labels": {"region": "eu", "compliance": ["self-hosted"]},
            },
        },
        "models": {
            "open": {"targets": [{"provider": "public", "model": "m"}]},
            "local": {"targets": [{"provider": "gpu", "model": "l"}], "fallback": ["open"]},
        },
        **extra,
    }


def test_check_config_rejects_a_route_no_target_can_satisfy() -> None:
    ok = [
        {
            "name": "reg",
            "match": {"tags": ["regulated"]},
            "model": "local",
            "require": {"compliance": ["self-hosted"]},
        }
    ]
    parse_config(_policy(routes=ok))
    bad = [
        {
            "name": "reg",
            "match": {"tags": ["regulated"]},
            "model": "open",
            "require": {"compliance": ["self-hosted"]},
        }
    ]
    with pytest.raises(
        ConfigError,
        match=r"route 'reg': no target of 'open'.*compliance in \[self-hosted\].*routes\[0\]\.require",
    ):
        parse_config(_policy(routes=bad))
    shadow = [{**ok[0], "shadow": {"model": "open", "percent": 5}}]
    with pytest.raises(ConfigError, match="shadow model 'open'"):
        parse_config(_policy(routes=shadow))


def test_check_config_combines_team_and_route_requirements() -> None:
    teams = {"billing": {"require": {"region": ["us"]}}}
    routes = [
        {
            "name": "b",
            "match": {"team": "billing"},
            "model": "local",
            "require": {"compliance": "self-hosted"},
        }
    ]
    with pytest.raises(ConfigError, match="route 'b'"):
        parse_config(_policy(teams=teams, routes=routes))
    with pytest.raises(ConfigError, match=r"teams\.eu\.require"):
        parse_config(_policy(teams={"eu": {"models": ["open"], "require": {"region": "eu"}}}))


def test_malformed_labels_are_refused_with_their_path() -> None:
    policy = _policy()
    policy["providers"]["gpu"]["labels"] = {"Region": "eu"}
    with pytest.raises(ConfigError, match=r"providers\.gpu\.labels"):
        parse_config(policy)
    policy["providers"]["gpu"]["labels"] = {"region": []}
    with pytest.raises(ConfigError, match="at least one value"):
        parse_config(policy)


def test_a_route_serving_the_requested_model_needs_only_one_model_that_can_comply() -> None:
    ok = [{"name": "eu", "match": {"tags": ["eu"]}, "require": {"region": "eu"}}]
    parse_config(_policy(routes=ok))  # 'local' can comply; a request for 'open' gets a 400 at run time
    bad = [{"name": "ap", "match": {"tags": ["ap"]}, "require": {"region": "ap"}}]
    with pytest.raises(ConfigError, match="no target of any model"):
        parse_config(_policy(routes=bad))
