from __future__ import annotations

from pathlib import Path

import pytest

from sluice.config import load_config, parse_config
from sluice.errors import ConfigError

EXAMPLE = """
server: {port: 4000, admin_key: env:ADMIN}
providers:
  openai: {type: openai, api_key: env:OPENAI_API_KEY}
models:
  gpt-4o-mini: {targets: [{provider: openai, model: gpt-4o-mini}]}
teams:
  search: {models: [gpt-4o-mini]}
"""


def test_loads_and_hides_secrets(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(EXAMPLE)
    config = load_config(path, {"OPENAI_API_KEY": "sk-real-secret", "ADMIN": "adm"})
    key = config.providers["openai"].api_key
    assert key is not None and key.reveal() == "sk-real-secret"
    assert "sk-real-secret" not in repr(config)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"server": {"prot": 1}}, "$.server"),
        ({"server": {"port": "x"}}, "$.server.port"),
        (
            {"providers": {"o": {"type": "openai", "api_key": "env:MISSING"}}},
            "MISSING is not set - at `$.providers.o.api_key`",
        ),
        ({"providers": {"o": {"type": "openai", "api_key": "sk-inline"}}}, "env:NAME"),
        (
            {"models": {"m": {"targets": [{"provider": "nope", "model": "x"}]}}},
            "$.models.m.targets[0].provider",
        ),
        ({"teams": {"t": {"models": ["ghost"]}}}, "$.teams.t.models[0]"),
        ({"server": {"workers": 2}}, "redis"),
        ({"limits_typo": {}}, "limits_typo"),
        ({"store": {"responses_retention_days": 0}}, "$.store.responses_retention_days"),
    ],
)
def test_errors_name_the_path(data: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data, {})
    assert needle in err.value.message
    assert "sk-inline" not in err.value.message


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("server: [")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(path, {})
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "none.yaml", {})


def test_bundled_demo_config_is_valid() -> None:
    from importlib import resources

    path = Path(str(resources.files("sluice.config").joinpath("demo.yaml")))
    config = load_config(path, {})
    assert config.providers["demo"].base_url == "builtin:demo"


def test_documented_example_policy_is_valid() -> None:
    path = Path(__file__).resolve().parents[2] / "examples/sluice.yaml"
    env = {
        n: f"x-{n}"  # distinct: two admin keys may not share a secret
        for n in (
            "OPENAI_API_KEY",
            "GROQ_API_KEY",
            "SLUICE_ADMIN_KEY",
            "SLUICE_FINANCE_KEY",
            "SLUICE_SEARCH_ADMIN_KEY",
            "SLUICE_KEY_SECRET",
            "SLUICE_ALERT_WEBHOOK",
            "ANTHROPIC_API_KEY",
            "GEMINI_API_KEY",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AZURE_OPENAI_API_KEY",
            "LANGFUSE_PUBLIC_KEY",
            "LANGFUSE_SECRET_KEY",
        )
    }
    config = load_config(path, env)
    assert config.teams["billing"].budget is not None
    from sluice.app import validate

    validate(config)  # every provider type is known and constructible


def test_every_unset_secret_is_reported_at_once() -> None:
    data = {
        "server": {"admin_key": "env:ADMIN_MISSING"},
        "providers": {
            "o": {"type": "openai", "api_key": "env:OPENAI_MISSING"},
            "a": {"type": "anthropic", "api_key": "env:ANTHROPIC_MISSING"},
            "b": {"type": "openai", "api_key": "env:OPENAI_MISSING"},
        },
    }
    with pytest.raises(ConfigError) as err:
        parse_config(data, {})
    message = err.value.message
    assert (
        "environment variable OPENAI_MISSING is not set - at `$.providers.o.api_key`, `$.providers.b.api_key`"
        in message
    )
    assert "ANTHROPIC_MISSING is not set - at `$.providers.a.api_key`" in message
    assert "ADMIN_MISSING is not set - at `$.server.admin_key`" in message
