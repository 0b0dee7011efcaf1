"""How store rows are shown to people and scripts (the admin API and the CLI alike)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from sluice.errors import BadRequest
from sluice.store.records import KeyRecord


def iso(ts: float) -> str:
    """A Unix time as ISO 8601 in UTC, to the second."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def key_view(key: KeyRecord) -> dict[str, Any]:
    """A key as shown to people and scripts: never the secret, never the hash."""
    return {
        "id": key.id, "prefix": key.prefix, "team": key.team, "user": key.user, "name": key.name,
        "models": list(key.models) if key.models is not None else None,
        "created_at": iso(key.created_at), "revoked_at": iso(key.revoked_at) if key.revoked_at else None,
        "rpm": key.rpm, "tpm": key.tpm, "concurrent": key.concurrent, "budget_usd": key.budget_usd,
        "budget_period": key.budget_period,
    }  # fmt: skip


def parse_since(value: str | None) -> float | None:
    """``2026-11-01``, an ISO timestamp, or ``7d`` / ``24h`` / ``30m`` ago."""
    if not value:
        return None
    units = {"d": 86400, "h": 3600, "m": 60}
    if value[-1] in units and value[:-1].isdigit():
        return time.time() - int(value[:-1]) * units[value[-1]]
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"invalid 'since': {value!r} (use 2026-11-01, an ISO time, or 7d / 24h)") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
