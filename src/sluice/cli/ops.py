"""Operations commands: ``sluice db migrate | status`` and ``sluice reload``.

Registered on the main group by ``sluice.cli``; this module does not import it (``python -m
sluice.cli`` would load it twice).
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path
from typing import Any

import click

from sluice.config import Config, load_config
from sluice.errors import ConfigError
from sluice.store.base import StoreUnavailable, create_store
from sluice.store.migrations import SchemaStatus

config_option = click.option(
    "--config", "config_path", envvar="SLUICE_CONFIG", type=click.Path(dir_okay=False),
    help="Policy file (default: $SLUICE_CONFIG, else the bundled demo policy).",
)  # fmt: skip


def _load(path: str | None) -> Config:
    chosen = path or os.environ.get("SLUICE_CONFIG")
    p = Path(chosen) if chosen else Path(str(resources.files("sluice.config").joinpath("demo.yaml")))
    try:
        return load_config(p)
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None


@click.group()
def db() -> None:
    """The store's schema: where a database stands, and upgrading it."""


def _status_view(status: SchemaStatus) -> dict[str, Any]:
    return {
        "version": status.version, "latest": status.latest, "current": status.current,
        "pending": list(status.pending),
    }  # fmt: skip


async def _db(url: str, migrate: bool) -> tuple[list[str], SchemaStatus]:
    store = create_store(url)
    await store.open(migrate=False)
    try:
        applied = await store.migrate() if migrate else []
        return applied, await store.schema_status()
    finally:
        await store.close()


def _run_db(config: Config, migrate: bool) -> tuple[list[str], SchemaStatus]:
    try:
        return asyncio.run(_db(config.store.url, migrate))
    except StoreUnavailable as exc:
        raise click.ClickException(str(exc)) from None


@db.command("status")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def db_status(config_path: str | None, as_json: bool) -> None:
    """The schema version of store.url, and the steps a migration would apply (exit 1 if any)."""
    _, status = _run_db(_load(config_path), migrate=False)
    if as_json:
        click.echo(json.dumps(_status_view(status), indent=2))
    else:
        state = "up to date" if status.current else f"{len(status.pending)} step(s) pending"
        click.echo(f"schema version {status.version} of {status.latest}: {state}")
        for step in status.pending:
            click.echo(f"  pending: {step}")
    if not status.current:
        raise SystemExit(1)


@db.command("migrate")
@config_option
def db_migrate(config_path: str | None) -> None:
    """Upgrade store.url to the current schema (safe to run from several replicas at once)."""
    applied, status = _run_db(_load(config_path), migrate=True)
    for step in applied:
        click.echo(f"applied: {step}")
    click.echo(f"schema version {status.version} of {status.latest}: up to date")


@click.command("reload")
@config_option
@click.option("--url", help="The running gateway (default: http(s)://server.host:server.port).")
@click.option("--cacert", type=click.Path(dir_okay=False), help="Trust this CA (a self-signed server.tls).")
def reload(config_path: str | None, url: str | None, cacert: str | None) -> None:
    """Ask the running gateway to load its policy file again (POST /admin/reload)."""
    config = _load(config_path)
    if config.server.admin_key is None:
        raise click.ClickException("server.admin_key is not set: the admin API (and this command) is off")
    scheme = "https" if config.server.tls is not None else "http"
    base = url or f"{scheme}://{config.server.host}:{config.server.port}"
    req = urllib.request.Request(  # noqa: S310 - the operator's own gateway URL
        base.rstrip("/") + "/admin/reload",
        method="POST",
        data=b"",
        headers={"authorization": f"Bearer {config.server.admin_key.reveal()}"},
    )
    try:
        context = ssl.create_default_context(cafile=cacert) if cacert else None
        with urllib.request.urlopen(req, timeout=30, context=context) as resp:  # noqa: S310
            body = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        raise click.ClickException(f"reload refused ({exc.code}): {detail}") from None
    except OSError as exc:
        raise click.ClickException(f"cannot reach the gateway at {base}: {exc}") from None
    click.echo(f"reloaded: policy version {body.get('version')}")
    for name in body.get("restart_required", []):
        click.echo(f"  {name} changed: takes effect at the next restart", err=True)
