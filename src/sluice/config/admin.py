"""Admin keys with roles (``server.admin_keys``): who may use the admin API and the console.

``server.admin_key`` stays the single key of role ``admin`` (named ``admin``); ``admin_keys`` adds
more, each with a name (shown in the audit trail), a secret read from the environment and a role:

- ``admin``: everything;
- ``team_admin``: the keys, spend, requests and budgets of the teams it names, nothing else;
- ``viewer``: read-only, every team.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from sluice.config.secret import Secret
from sluice.errors import ConfigError

Role = Literal["admin", "team_admin", "viewer"]
#: The name ``server.admin_key`` has in the audit trail.
ROOT_ADMIN_NAME = "admin"


class AdminKeyConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    #: Shown in the audit trail as who made a change.
    name: str
    key: Secret
    role: Role
    #: The teams a ``team_admin`` manages (required for it, refused for the other roles).
    teams: list[str] | None = None


def check_admin_keys(
    keys: list[AdminKeyConfig], admin_key: Secret | None, teams: set[str], origin: str
) -> None:
    """Names unique (``admin`` is ``server.admin_key``'s), secrets unique, teams declared and given
    exactly where the role takes them."""
    names = {ROOT_ADMIN_NAME} if admin_key is not None else set()
    secrets = {admin_key.reveal()} if admin_key is not None else set()
    for i, k in enumerate(keys):
        at = f"$.server.admin_keys[{i}]"
        if not k.name.strip():
            raise ConfigError(f"{origin}: an admin key needs a name - at `{at}.name`")
        if k.name in names:
            raise ConfigError(f"{origin}: admin key name '{k.name}' is used twice - at `{at}.name`")
        names.add(k.name)
        if k.key.reveal() and k.key.reveal() in secrets:
            raise ConfigError(f"{origin}: two admin keys have the same secret - at `{at}.key`")
        secrets.add(k.key.reveal())
        if k.role == "team_admin":
            if not k.teams:
                raise ConfigError(f"{origin}: a team_admin key needs its teams - at `{at}.teams`")
            for j, team in enumerate(k.teams):
                if team not in teams:
                    raise ConfigError(f"{origin}: unknown team '{team}' - at `{at}.teams[{j}]`")
        elif k.teams is not None:
            raise ConfigError(
                f"{origin}: only a team_admin key takes teams (role {k.role} sees every team) - at `{at}.teams`"
            )
