"""``server.admin_keys``: every mistake is refused with its path."""

from __future__ import annotations

import pytest

from sluice.config.loader import parse_config
from sluice.errors import ConfigError

ENV = {"A": "secret-a", "B": "secret-b", "C": "secret-a"}


def _policy(*keys: dict[str, object], admin_key: str | None = "env:A") -> dict[str, object]:
    server: dict[str, object] = {"admin_keys": list(keys)}
    if admin_key:
        server["admin_key"] = admin_key
    return {"server": server, "teams": {"eng": {}, "billing": {}}}


def test_roles_load() -> None:
    config = parse_config(_policy(
        {"name": "fin", "key": "env:B", "role": "viewer"},
    ), ENV)  # fmt: skip
    assert (
        config.server.admin_keys[0].role == "viewer"
        and repr(config.server.admin_keys[0].key) == "Secret(env:B)"
    )
    config = parse_config(
        _policy({"name": "lead", "key": "env:B", "role": "team_admin", "teams": ["eng"]}), ENV
    )
    assert config.server.admin_keys[0].teams == ["eng"]


@pytest.mark.parametrize(
    ("key", "needle"),
    [
        (
            {"name": "lead", "key": "env:B", "role": "team_admin"},
            "needs its teams - at `$.server.admin_keys[0].teams`",
        ),
        (
            {"name": "lead", "key": "env:B", "role": "team_admin", "teams": ["ghosts"]},
            "unknown team 'ghosts'",
        ),
        (
            {"name": "fin", "key": "env:B", "role": "viewer", "teams": ["eng"]},
            "only a team_admin key takes teams",
        ),
        ({"name": "admin", "key": "env:B", "role": "viewer"}, "name 'admin' is used twice"),
        ({"name": "x", "key": "env:C", "role": "viewer"}, "same secret"),
        ({"name": "x", "key": "env:B", "role": "root"}, "role"),
        ({"name": "x", "key": "inline", "role": "viewer"}, "env:NAME"),
        ({"name": "x", "key": "env:B", "role": "viewer", "extra": 1}, "extra"),
    ],
)
def test_mistakes_are_refused(key: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_policy(key), ENV)
    assert needle in err.value.message
