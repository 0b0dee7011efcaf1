"""``sluice audit`` and ``sluice keys limits``; what the key commands append to the audit trail."""

from __future__ import annotations

import json
from typing import Any

import click
import msgspec

from sluice.store.audit import AUDIT_SELECT, cli_actor, entry, entry_from_row
from sluice.store.base import Store
from sluice.store.keys import KeyLimits, apply_limits
from sluice.store.records import KeyRecord
from sluice.store.views import iso, key_view


async def audited(
    store: Store, action: str, target: str, team: str | None,
    before: dict[str, Any] | None, after: dict[str, Any] | None,
) -> None:  # fmt: skip
    """Append a change made with the CLI (who = ``cli:<OS user>``)."""
    await store.append_audit(entry(cli_actor(), "cli", action, target, team, before, after))


async def create_key(store: Store, record: KeyRecord) -> None:
    await store.create_key(record)
    await audited(store, "key.created", record.id, record.team, None, key_view(record))


async def revoke_key(store: Store, key_id: str, at: float) -> bool:
    keys = {k.id: k for k in await store.list_keys(include_revoked=True)}
    key = keys.get(key_id)
    if key is None or key.revoked_at is not None or not await store.revoke_key(key_id, at):
        return False
    await audited(
        store, "key.revoked", key_id, key.team, key_view(key), {**key_view(key), "revoked_at": iso(at)}
    )
    return True


def _limits(view: dict[str, Any]) -> dict[str, Any]:
    return {f: view[f] for f in ("rpm", "tpm", "concurrent", "budget_usd", "budget_period")}


@click.command("limits")
@click.option("--config", "config_path", envvar="SLUICE_CONFIG", type=click.Path(dir_okay=False),
              help="Policy file (default: $SLUICE_CONFIG, else the bundled demo policy).")  # fmt: skip
@click.argument("key_id")
@click.option("--rpm", help="Requests per minute ('none' removes the limit).")
@click.option("--tpm", help="Tokens per minute ('none' removes it).")
@click.option("--concurrent", help="Requests in flight ('none' removes it).")
@click.option("--budget-usd", help="USD budget per period ('none' removes it).")
@click.option("--budget-period", type=click.Choice(["daily", "weekly", "monthly"]))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def keys_limits(config_path: str | None, key_id: str, as_json: bool, **given: str | None) -> None:
    """Change a key's own limits and budget (the others are kept); running gateways apply it
    within store.key_refresh_s."""
    from sluice.cli.base import _database, _load, _with_store

    config = _load(config_path)
    fields: dict[str, Any] = {}
    for name, value in given.items():
        if value is None:
            continue
        if value.lower() == "none":
            fields[name] = None
        elif name == "budget_period":
            fields[name] = value
        else:
            try:
                fields[name] = float(value) if name == "budget_usd" else int(value)
            except ValueError:
                raise click.ClickException(f"--{name.replace('_', '-')} must be a number or 'none'") from None
    if not fields:
        raise click.ClickException("give at least one limit to change")
    try:
        change = msgspec.convert(fields, KeyLimits)
    except msgspec.ValidationError as exc:
        raise click.ClickException(f"invalid key limits: {exc}") from None
    _database(config, create=False)

    async def run(store: Store) -> dict[str, Any] | None:
        key = next((k for k in await store.list_keys(include_revoked=False) if k.id == key_id), None)
        if key is None:
            return None
        updated = apply_limits(key, change)
        if not await store.update_key(updated):
            return None
        await audited(store, "key.limits_changed", key_id, key.team,
                      _limits(key_view(key)), _limits(key_view(updated)))  # fmt: skip
        return key_view(updated)

    view = _with_store(config, run)
    if view is None:
        raise click.ClickException(f"no active key with id '{key_id}'")
    click.echo(json.dumps(view, indent=2) if as_json else f"updated {key_id}: " + json.dumps(_limits(view)))


@click.command("audit")
@click.option("--config", "config_path", envvar="SLUICE_CONFIG", type=click.Path(dir_okay=False),
              help="Policy file (default: $SLUICE_CONFIG, else the bundled demo policy).")  # fmt: skip
@click.option("--since", help="2026-11-01, an ISO time, or 7d / 24h ago.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def audit(config_path: str | None, since: str | None, limit: int, as_json: bool) -> None:
    """The audit trail: every change made with the CLI, the admin API or the console, newest first."""
    from sluice.cli.base import _database, _emit, _load, _with_store
    from sluice.errors import SluiceError
    from sluice.store.views import parse_since

    config = _load(config_path)
    try:
        since_ts = parse_since(since) or 0.0
    except SluiceError as exc:
        raise click.ClickException(exc.message) from None
    _database(config, create=False)
    sql = AUDIT_SELECT + " WHERE ts >= ? ORDER BY id DESC LIMIT ?"
    rows = _with_store(config, lambda s: s.fetch(sql, [since_ts, limit]))
    views = [entry_from_row(r).view() for r in rows]
    if as_json:
        click.echo(json.dumps(views, indent=2))
        return
    for v in views:
        v["change"] = _change(v["before"], v["after"])
    _emit(views, False, ["at", "actor", "via", "action", "target", "team", "change"])


def _change(before: dict[str, Any] | None, after: dict[str, Any] | None) -> str:
    """What differs, as ``field: old -> new``."""
    b, a = before or {}, after or {}
    changed = [k for k in dict.fromkeys([*b, *a]) if b.get(k) != a.get(k)]
    if before is None:
        return "created"
    return ", ".join(f"{k}: {b.get(k)} -> {a.get(k)}" for k in changed) or "-"
