"""Appending to the audit trail from the admin API and the console (``store/audit.py``)."""

from __future__ import annotations

from typing import Any

from sluice.server.authz import Admin
from sluice.server.wire import Request
from sluice.store.audit import entry


async def record(
    request: Request, admin: Admin, action: str, target: str | None, team: str | None,
    before: dict[str, Any] | None = None, after: dict[str, Any] | None = None,
) -> None:  # fmt: skip
    """One entry: who (the admin key's name), through what (``api`` or ``console``), what."""
    via = "console" if admin.via == "session" else "api"
    await request.services.store.append_audit(entry(admin.name, via, action, target, team, before, after))


LIMIT_FIELDS = ("rpm", "tpm", "concurrent", "budget_usd", "budget_period")


def limits_view(view: dict[str, Any]) -> dict[str, Any]:
    return {f: view.get(f) for f in LIMIT_FIELDS}
