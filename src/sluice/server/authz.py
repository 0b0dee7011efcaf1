"""Who may do what on the admin API and the console: the one authorization function.

Every ``/admin/*`` route and every console endpoint calls :func:`authorize`. A caller is an admin
key sent as ``Authorization: Bearer`` (``server.admin_key``, role ``admin``; or one of
``server.admin_keys`` with its role), or a console session cookie (an admin key's, or a gateway
key's: read-only, scoped to the key's team). Roles:

- ``admin``: everything; ``viewer``: read everything, change nothing;
- ``team_admin``: read and change its teams' keys; read its teams' spend, requests, budgets, audit;
- ``team_viewer`` (a gateway key signed in to the console): read its own team's data.

A change by a read-only role, or a team outside a team role's teams, is a 403 naming what is
missing; an object of another team looked up by id is a 404 (its existence is not revealed).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Literal

from sluice.config.admin import ROOT_ADMIN_NAME
from sluice.config.model import Config
from sluice.errors import AuthenticationFailed, PermissionDenied
from sluice.server.wire import Request

Role = Literal["admin", "team_admin", "viewer", "team_viewer"]
Action = Literal["read", "write"]
WRITERS: frozenset[str] = frozenset({"admin", "team_admin"})


@dataclass(frozen=True, slots=True)
class Admin:
    """An authenticated caller of the admin API or the console."""

    name: str
    role: Role
    #: The teams it is restricted to; None = every team.
    teams: frozenset[str] | None = None
    #: ``bearer`` (Authorization header) or ``session`` (the console's cookie).
    via: Literal["bearer", "session"] = "bearer"

    def sees(self, team: str | None) -> bool:
        return self.teams is None or (team is not None and team in self.teams)

    @property
    def can_write(self) -> bool:
        return self.role in WRITERS

    def describe(self) -> str:
        teams = f" for teams {', '.join(sorted(self.teams))}" if self.teams is not None else ""
        return f"'{self.name}' has role {self.role}{teams}"


def admin_enabled(config: Config) -> bool:
    return config.server.admin_key is not None or bool(config.server.admin_keys)


def admin_for_secret(config: Config, token: str) -> Admin | None:
    """The admin key ``token`` is, comparing it with every configured key in constant time."""
    found: Admin | None = None
    presented = token.encode()
    root = config.server.admin_key
    if root is not None and root.reveal() and hmac.compare_digest(presented, root.reveal().encode()):
        found = Admin(ROOT_ADMIN_NAME, "admin")
    for k in config.server.admin_keys:
        if k.key.reveal() and hmac.compare_digest(presented, k.key.reveal().encode()):
            teams = frozenset(k.teams) if k.role == "team_admin" and k.teams else None
            found = Admin(k.name, k.role, teams)
    return found


async def authenticate(request: Request) -> Admin:
    """The caller: a bearer admin key, else the console's session cookie."""
    from sluice.server import session  # the console's session cookies (same layer)

    config = request.services.config
    if not admin_enabled(config):
        raise PermissionDenied(
            "the admin API is disabled: set server.admin_key (or server.admin_keys) in the policy file"
        )
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        admin = admin_for_secret(config, token.strip())
        if admin is None:
            raise AuthenticationFailed("invalid admin key")
        return admin
    from_cookie = await session.from_request(request)
    if from_cookie is not None:
        return from_cookie
    raise AuthenticationFailed("missing admin key: send 'Authorization: Bearer <admin key>'")


async def authorize(
    request: Request, action: Action = "read", *, team: str | None = None, unscoped: bool = False
) -> Admin:
    """The caller, if it may take ``action`` (on ``team``'s data, when one is named); else 401/403.
    ``unscoped``: the data spans teams and cannot be filtered, so a team role may not read it."""
    from sluice.server import session

    admin = await authenticate(request)
    if action == "write":
        if not admin.can_write:
            raise PermissionDenied(f"admin key {admin.describe()}: changes need role admin or team_admin")
        if admin.via == "session":
            session.check_csrf(request)
    if team is not None and not admin.sees(team):
        raise PermissionDenied(f"admin key {admin.describe()}: it has no access to team '{team}'")
    if unscoped and admin.teams is not None:
        raise PermissionDenied(
            f"admin key {admin.describe()}: this covers every team and needs role admin or viewer"
        )
    return admin


def team_scope(request: Request, admin: Admin) -> frozenset[str] | None:
    """The teams a read covers: the caller's, narrowed to ``?team=`` when given (a team outside
    the caller's teams is a 403 that names it)."""
    team = request.query.get("team")
    if not team:
        return admin.teams
    if not admin.sees(team):
        raise PermissionDenied(f"admin key {admin.describe()}: it has no access to team '{team}'")
    return frozenset({team})
