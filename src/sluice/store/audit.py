"""The audit trail: one row per change made through the CLI, the admin API or the console.

Append-only from the gateway's point of view: the store has no call that updates or deletes an
entry, and the database refuses both (a trigger on SQLite and on PostgreSQL). Values before and
after are views without secrets (a key's view never holds its secret or hash).

Actions: ``key.created``, ``key.revoked``, ``key.limits_changed``; the hooks ``policy.reloaded``
and ``cache.cleared`` take the same entry (:func:`entry`).
"""

from __future__ import annotations

import getpass
import json
import time
from dataclasses import dataclass
from typing import Any, Final

AUDIT_COLUMNS: Final = ("ts", "actor", "via", "action", "target", "team", "before", "after")
ACTIONS: Final = ("key.created", "key.revoked", "key.limits_changed", "policy.reloaded", "cache.cleared")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    ts: float
    #: The admin key's name, ``key:<name>`` for a console key session, or ``cli:<OS user>``.
    actor: str
    #: ``cli``, ``api`` or ``console``.
    via: str
    action: str
    #: What changed: a key id, a policy file, a cache scope.
    target: str | None
    #: The team the change belongs to (team-scoped roles see only their teams' entries).
    team: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    id: int = 0

    def to_row(self) -> tuple[Any, ...]:
        return (
            self.ts, self.actor, self.via, self.action, self.target, self.team,
            json.dumps(self.before) if self.before is not None else None,
            json.dumps(self.after) if self.after is not None else None,
        )  # fmt: skip

    def view(self) -> dict[str, Any]:
        from sluice.store.views import iso

        return {
            "id": self.id, "at": iso(self.ts), "ts": self.ts, "actor": self.actor, "via": self.via,
            "action": self.action, "target": self.target, "team": self.team, "before": self.before,
            "after": self.after,
        }  # fmt: skip


def entry(
    actor: str, via: str, action: str, target: str | None, team: str | None,
    before: dict[str, Any] | None = None, after: dict[str, Any] | None = None,
) -> AuditEntry:  # fmt: skip
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    return AuditEntry(time.time(), actor, via, action, target, team, before, after)


def cli_actor() -> str:
    """``cli:<OS user>`` for changes made with the command line."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}"


def entry_from_row(r: Any) -> AuditEntry:
    """A row of ``SELECT id, AUDIT_COLUMNS``."""
    return AuditEntry(
        id=int(r[0]), ts=float(r[1]), actor=r[2], via=r[3], action=r[4], target=r[5], team=r[6],
        before=json.loads(r[7]) if r[7] is not None else None,
        after=json.loads(r[8]) if r[8] is not None else None,
    )  # fmt: skip


def audit_ddl(dialect: str) -> list[str]:
    """The table, its index, and the triggers that keep it append-only."""
    cols = "ts {real} NOT NULL, actor TEXT NOT NULL, via TEXT NOT NULL, action TEXT NOT NULL, target TEXT, team TEXT, before TEXT, after TEXT"
    if dialect == "sqlite":
        return [
            f"CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY AUTOINCREMENT, {cols.format(real='REAL')})",
            "CREATE INDEX IF NOT EXISTS audit_ts ON audit (ts)",
            "CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit "
            "BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END",
            "CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit "
            "BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END",
        ]
    return [
        f"CREATE TABLE IF NOT EXISTS audit (id BIGSERIAL PRIMARY KEY, {cols.format(real='DOUBLE PRECISION')})",
        "CREATE INDEX IF NOT EXISTS audit_ts ON audit (ts)",
        "CREATE OR REPLACE FUNCTION sluice_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'the audit trail is append-only'; END $$",
        "CREATE OR REPLACE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit "
        "FOR EACH ROW EXECUTE FUNCTION sluice_audit_append_only()",
    ]


AUDIT_INSERT: Final = (
    f"INSERT INTO audit ({', '.join(AUDIT_COLUMNS)}) VALUES ({', '.join('?' for _ in AUDIT_COLUMNS)})"
)
AUDIT_SELECT: Final = f"SELECT id, {', '.join(AUDIT_COLUMNS)} FROM audit"
