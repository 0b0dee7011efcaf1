from __future__ import annotations

import pytest

from sluice.config import parse_config
from sluice.errors import ConfigError

ENV = {"ADMIN": "adm", "OTEL": "http://collector:4318", "TOK": "t0k", "PK": "pk", "SK": "sk"}


def _parse(extra: dict[str, object], admin: bool = True) -> object:
    data: dict[str, object] = {"server": {"admin_key": "env:ADMIN"}} if admin else {}
    return parse_config({**data, **extra}, ENV)


def test_the_example_shape_loads() -> None:
    config = parse_config({
        "server": {"admin_key": "env:ADMIN"},
        "metrics": {"auth": True, "listen": "127.0.0.1:9464"},
        "telemetry": {"otlp": {"endpoint": "env:OTEL", "headers": {"authorization": "env:TOK"}, "sample_ratio": 0.25},
                      "langfuse": {"host": "https://langfuse.internal", "public_key": "env:PK", "secret_key": "env:SK"}},
    }, ENV)  # fmt: skip
    assert config.metrics.listen_address() == ("127.0.0.1", 9464)
    assert config.telemetry.otlp is not None and config.telemetry.otlp.sample_ratio == 0.25
    assert "sk" not in repr(config.telemetry.langfuse)


@pytest.mark.parametrize(
    ("extra", "admin", "message"),
    [
        ({"metrics": {"auth": True}}, False, "metrics.auth needs server.admin_key"),
        ({"metrics": {"listen": "9464"}}, True, "metrics.listen must be host:port"),
        ({"metrics": {"listen": "localhost:99999"}}, True, "metrics.listen must be host:port"),
        ({"metrics": {"lisen": "x:1"}}, True, "lisen"),
        ({"telemetry": {"otlp": {"endpoint": "env:NOPE"}}}, True, "NOPE is not set"),
        ({"telemetry": {"otlp": {"endpoint": "collector:4318"}}}, True, "must be an http(s) URL"),
        ({"telemetry": {"otlp": {"endpoint": "http://c", "sample_ratio": 2}}}, True, "sample_ratio"),
        ({"telemetry": {"otlp": {"endpoint": "http://c", "headers": {"x": "env:NOPE"}}}}, True, "headers.x"),
        (
            {"telemetry": {"langfuse": {"host": "https://l", "public_key": "pk", "secret_key": "env:SK"}}},
            True,
            "env:NAME",
        ),
    ],
)
def test_refused(extra: dict[str, object], admin: bool, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        _parse(extra, admin)
    assert message in err.value.message
