from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sluice.config import parse_config
from sluice.config.guardrails import PiiGuardrail, WebhookGuardrail
from sluice.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples/sluice.yaml"


def _load(guardrails: dict[str, Any], **extra: Any) -> Any:
    return parse_config({"guardrails": guardrails, **extra}, {"K": "secret"})


def test_the_design_shape_loads_with_yaml_on_keys() -> None:
    text = """
guardrails:
  pii-redact: {type: pii, action: redact, on: [input, output], entities: [email, phone, credit_card, iban, ssn, ip], restore: false}
  no-secrets: {type: secrets, action: block, on: [input, output]}
  injection:  {type: prompt_injection, action: block, on: [input], threshold: 0.8}
  json-out:   {type: output_schema, action: block}
  lakera:     {type: webhook, url: https://guard.internal/v1/check, timeout_s: 0.5, on: [input], on_error: allow}
routing: {guardrails: [no-secrets]}
logging: {payloads: redacted}
routes: [{name: r, guardrails: [pii-redact, injection]}]
"""
    config = parse_config(yaml.safe_load(text), {})
    assert isinstance(config.guardrails["pii-redact"], PiiGuardrail)
    assert config.guardrails["pii-redact"].on == ["input", "output"]
    assert (
        isinstance(config.guardrails["lakera"], WebhookGuardrail)
        and config.guardrails["lakera"].on_error == "allow"
    )
    assert config.routing.guardrails == ["no-secrets"] and config.logging.payloads == "redacted"


def test_the_example_policy_has_guardrails() -> None:
    config = parse_config(yaml.safe_load(EXAMPLE.read_text()), {n: "x" for n in _env_names()})
    assert set(config.guardrails) >= {"pii-redact", "no-secrets", "injection", "json-out", "lakera"}


def _env_names() -> list[str]:
    return [w.split(":", 1)[1].strip("}], ") for w in EXAMPLE.read_text().split() if w.startswith("env:")]


@pytest.mark.parametrize(
    ("guardrails", "extra", "needle"),
    [
        ({"g": {"type": "nope"}}, {}, "Invalid value 'nope' - at `$.guardrails.g.type`"),
        ({"g": {"type": "pii", "threshold": 0.5}}, {}, "unknown field `threshold` - at `$.guardrails.g`"),
        ({"g": {"type": "secrets", "action": "shout"}}, {}, "$.guardrails.g.action"),
        ({"g": {"type": "pii", "on": ["sideways"]}}, {}, "$.guardrails.g.on[0]"),
        (
            {"g": {"type": "pii", "on": []}},
            {},
            "must apply to input, output or both - at `$.guardrails.g.on`",
        ),
        ({}, {"routing": {"guardrails": ["ghost"]}}, "unknown guardrail 'ghost'"),
        (
            {"g": {"type": "pii"}},
            {"routes": [{"name": "r", "guardrails": ["g", "ghost"]}]},
            "at `$.routes[0].guardrails[1]`",
        ),
        ({"g": {"type": "pii", "patterns": {"emp": "("}}}, {}, "invalid regular expression"),
        ({"g": {"type": "pii", "patterns": {"Bad Name": "x"}}}, {}, "lower_snake_case"),
        ({"g": {"type": "pii", "patterns": {"e": "x*"}}}, {}, "matches the empty string"),
        ({"g": {"type": "pii", "restore": True, "action": "block"}}, {}, "restore needs action: redact"),
        ({"g": {"type": "prompt_injection", "action": "redact"}}, {}, "block or log, not redact"),
        ({"g": {"type": "prompt_injection", "on": ["output"]}}, {}, "checks input only"),
        ({"g": {"type": "prompt_injection", "threshold": 0}}, {}, "$.guardrails.g.threshold"),
        ({"g": {"type": "output_schema", "on": ["input"]}}, {}, "checks output only"),
        (
            {"g": {"type": "webhook", "url": "http://x", "on": ["output"]}},
            {},
            "webhook guardrails check input only",
        ),
        ({"g": {"type": "webhook", "url": "ftp://x"}}, {}, "http:// or https://"),
        ({"g": {"type": "webhook"}}, {}, "missing required field `url`"),
        ({"g": {"type": "webhook", "url": "http://x", "api_key": "inline"}}, {}, "env:NAME"),
        ({}, {"logging": {"payloads": "some"}}, "$.logging.payloads"),
    ],
)
def test_bad_policies_fail_with_their_path(
    guardrails: dict[str, Any], extra: dict[str, Any], needle: str
) -> None:
    with pytest.raises(ConfigError) as err:
        _load(guardrails, **extra)
    assert needle in str(err.value)
