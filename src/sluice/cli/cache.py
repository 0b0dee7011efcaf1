"""``sluice cache stats | clear [--route R] [--team T]``: the running gateway's response cache,
through its admin API (the memory backend lives in the gateway process)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import click

from sluice.config import Config

_FIELDS = ["backend", "entries", "bytes", "max_bytes", "hits", "misses", "bypass", "writes", "hit_rate"]


def _options(fn: Any) -> Any:
    from sluice.cli import config_option, json_option

    for option in (
        json_option,
        click.option("--url", help="The running gateway (default: http://server.host:server.port)."),
        click.option("--team", help="Only this team's entries (its key- and team-scoped ones)."),
        click.option("--route", help="Only this route's entries."),
        config_option,
    ):
        fn = option(fn)
    return fn


def _call(config: Config, url: str | None, method: str, route: str | None, team: str | None) -> Any:
    if config.server.admin_key is None:
        raise click.ClickException("server.admin_key is not set: the admin API (and this command) is off")
    base = url or f"http://{config.server.host}:{config.server.port}"
    query = urllib.parse.urlencode({k: v for k, v in (("route", route), ("team", team)) if v})
    req = urllib.request.Request(  # noqa: S310 - the operator's own gateway URL
        base.rstrip("/") + "/admin/cache" + (f"?{query}" if query else ""),
        method=method,
        headers={"authorization": f"Bearer {config.server.admin_key.reveal()}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise click.ClickException(
            f"gateway answered {exc.code}: {exc.read().decode(errors='replace')}"
        ) from None
    except OSError as exc:
        raise click.ClickException(f"cannot reach the gateway at {base}: {exc}") from None


@click.group()
def cache() -> None:
    """The response cache: counters, and clearing entries."""


@cache.command("stats")
@_options
def cache_stats(
    config_path: str | None, route: str | None, team: str | None, url: str | None, as_json: bool
) -> None:
    """Entries and bytes held; this replica's hits, misses, bypasses and writes."""
    from sluice.cli import _load

    view = _call(_load(config_path), url, "GET", route, team)
    if as_json:
        click.echo(json.dumps(view, indent=2))
        return
    for name in _FIELDS:
        value = view.get(name)
        click.echo(f"{name + ':':<11} {'-' if value is None else value}")


@cache.command("clear")
@_options
def cache_clear(
    config_path: str | None, route: str | None, team: str | None, url: str | None, as_json: bool
) -> None:
    """Drop entries (of a route, a team, or all of them)."""
    from sluice.cli import _load

    out = _call(_load(config_path), url, "DELETE", route, team)
    click.echo(json.dumps(out, indent=2) if as_json else f"cleared {out['cleared']} entries")
