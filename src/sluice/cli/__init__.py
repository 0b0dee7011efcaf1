"""``sluice serve | check-config | keys ... | spend``.

Every command finds its policy file through ``--config FILE`` or ``SLUICE_CONFIG``; without
either, the bundled demo policy (SQLite in ./sluice.db, the built-in demo upstream) is used.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import click
import msgspec

from sluice.config import Config, load_config
from sluice.config.loader import policy_warnings
from sluice.errors import ConfigError, SluiceError
from sluice.store.base import Store, StoreUnavailable, create_store, store_location
from sluice.store.keys import KeyCreate, key_from_spec, resolve_hmac_key, validate_key_request
from sluice.store.records import GROUP_BY_VALUES
from sluice.store.sqlite import sqlite_path
from sluice.store.views import key_view, parse_since

T = TypeVar("T")


def _config_path(path: str | None) -> Path:
    chosen = path or os.environ.get("SLUICE_CONFIG")
    if chosen:
        return Path(chosen)
    return Path(str(resources.files("sluice.config").joinpath("demo.yaml")))


def _load(path: str | None) -> Config:
    try:
        config = load_config(_config_path(path))
        from sluice.app import validate

        validate(config)
        return config
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None


def _database(config: Config, *, create: bool) -> None:
    """Say which database the command uses. A relative SQLite path is resolved against the
    current directory, by ``serve`` and every other command alike; a command that only reads
    refuses a database that is not there rather than create an empty one."""
    url = config.store.url
    location = store_location(url)
    if not url.startswith("sqlite:") or location == ":memory:" or Path(location).exists():
        click.echo(f"database: {location}", err=True)
        return
    relative = not Path(sqlite_path(url)).is_absolute()
    where = f"store.url {url!r}" + (", relative to the current directory" if relative else "")
    if not create:
        raise click.ClickException(
            f"no database at {location} ({where}). The gateway creates it when it first starts: run this "
            "command in the directory `sluice serve` runs in, or give store.url an absolute path."
        )
    click.echo(
        f"database: {location} (new: none was there; {where}). A gateway started in another "
        "directory uses another database and will not know this key.",
        err=True,
    )


config_option = click.option(
    "--config", "config_path", envvar="SLUICE_CONFIG", type=click.Path(dir_okay=False),
    help="Policy file (default: $SLUICE_CONFIG, else the bundled demo policy).",
)  # fmt: skip
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@click.group()
@click.version_option(package_name="sluice-gateway")
def main() -> None:
    """Sluice: the control plane for LLM traffic."""


@main.command()
@config_option
@click.option("--host", help="Override server.host.")
@click.option("--port", type=int, help="Override server.port.")
@click.option("--workers", type=int, help="Processes sharing the port (needs state.url: redis://...).")
def serve(config_path: str | None, host: str | None, port: int | None, workers: int | None) -> None:
    """Run the gateway."""
    from sluice.runner import CannotListen, run

    config = _load(config_path)
    try:
        run(config, _config_path(config_path), host=host, port=port, workers=workers)
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None
    except CannotListen as exc:
        raise click.ClickException(str(exc)) from None


@main.command("check-config")
@click.argument("path", required=False, type=click.Path(dir_okay=False))
@config_option
def check_config(path: str | None, config_path: str | None) -> None:
    """Validate a policy file (unknown keys, types, env secrets, references) and exit.
    The file is PATH, or --config, or $SLUICE_CONFIG."""
    if path and config_path and path != config_path:
        raise click.UsageError("give the policy file once: as PATH or as --config")
    config = _load(path or config_path)
    for warning in policy_warnings(config):
        click.echo(f"warning: {warning}", err=True)
    counts = [
        _count(len(config.providers), "provider"), _count(len(config.models), "model"),
        _count(len(config.routes), "route"), _count(len(config.teams), "team"),
    ]  # fmt: skip
    click.echo("ok: " + ", ".join(counts))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _with_store(config: Config, fn: Callable[[Store], Awaitable[T]]) -> T:
    async def run() -> T:
        store = create_store(config.store.url)
        await store.open()
        try:
            return await fn(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except (StoreUnavailable, SluiceError) as exc:
        raise click.ClickException(str(exc)) from None


def _emit(rows: list[dict[str, Any]], as_json: bool, columns: list[str]) -> None:
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    widths = {c: max([len(c)] + [len(_cell(r.get(c))) for r in rows]) for c in columns}
    click.echo("  ".join(c.upper().ljust(widths[c]) for c in columns))
    for r in rows:
        click.echo("  ".join(_cell(r.get(c)).ljust(widths[c]) for c in columns))


def _cell(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, list):
        return ",".join(map(str, v))
    if isinstance(v, float):
        return _decimal(v)
    return str(v)


def _decimal(v: float) -> str:
    """Fixed notation to the last significant digit (a cost of $0.0000012 is not 0.000000)."""
    if v == 0:
        return "0"
    text = f"{v:.10f}".rstrip("0").rstrip(".")
    return text if text not in ("0", "-0") else f"{v:.2e}"


@main.group()
def keys() -> None:
    """Create, list and revoke gateway keys."""


@keys.command("create")
@config_option
@click.option("--team", required=True, help="Team the key belongs to (declared under teams:).")
@click.option("--user", help="End user the key acts for.")
@click.option("--name", help="A label for people.")
@click.option("--models", help="Comma-separated allow-list of model names.")
@click.option("--rpm", type=int, help="The key's own limit: requests per minute.")
@click.option("--tpm", type=int, help="The key's own limit: tokens (input + output) per minute.")
@click.option("--concurrent", type=int, help="The key's own limit: requests in flight.")
@click.option("--budget-usd", type=float, help="The key's own USD budget per period.")
@click.option("--budget-period", type=click.Choice(["daily", "weekly", "monthly"]), help="Default: monthly.")
@json_option
def keys_create(config_path: str | None, team: str, models: str | None, as_json: bool, **fields: Any) -> None:
    """Create a key and print its secret (shown only this once)."""
    config = _load(config_path)
    model_list = [m.strip() for m in models.split(",") if m.strip()] if models else None
    try:
        spec = msgspec.convert({"team": team, "models": model_list, **fields}, KeyCreate)
        validate_key_request(config.models, config.teams, spec)
    except msgspec.ValidationError as exc:
        raise click.ClickException(f"invalid key limits: {exc}") from None
    except SluiceError as exc:
        raise click.ClickException(exc.message) from None
    secret_cfg = config.server.key_secret.reveal() if config.server.key_secret else None
    try:
        hmac_key = resolve_hmac_key(config.store.url, secret_cfg)
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None
    _database(config, create=True)
    secret, record = key_from_spec(hmac_key, spec)
    _with_store(config, lambda s: s.create_key(record))
    view = {**key_view(record), "key": secret}
    if as_json:
        click.echo(json.dumps(view, indent=2))
    else:
        click.echo(f"created {record.id} for team {team}")
        click.echo(f"key: {secret}")
        click.echo("(the key is shown only once: store it now)", err=True)


@keys.command("list")
@config_option
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked keys.")
@json_option
def keys_list(config_path: str | None, include_revoked: bool, as_json: bool) -> None:
    """List keys (never their secrets)."""
    config = _load(config_path)
    _database(config, create=False)
    records = _with_store(config, lambda s: s.list_keys(include_revoked=include_revoked))
    _emit(
        [key_view(k) for k in records],
        as_json,
        ["id", "prefix", "team", "user", "name", "models", "rpm", "tpm", "concurrent", "budget_usd",
         "budget_period", "created_at", "revoked_at"],
    )  # fmt: skip


@keys.command("revoke")
@config_option
@click.argument("key_id")
def keys_revoke(config_path: str | None, key_id: str) -> None:
    """Revoke a key: every replica refuses it within store.key_refresh_s."""
    config = _load(config_path)
    _database(config, create=False)
    if not _with_store(config, lambda s: s.revoke_key(key_id, time.time())):
        raise click.ClickException(f"no active key with id '{key_id}'")
    click.echo(f"revoked {key_id}")


@main.command()
@config_option
@click.option("--url", help="The running gateway (default: http://server.host:server.port).")
@json_option
def budgets(config_path: str | None, url: str | None, as_json: bool) -> None:
    """Each budget's limit, spend, reservations and reset time, from the running gateway."""
    import urllib.error
    import urllib.request

    config = _load(config_path)
    if config.server.admin_key is None:
        raise click.ClickException("server.admin_key is not set: the admin API (and this command) is off")
    base = url or f"http://{config.server.host}:{config.server.port}"
    req = urllib.request.Request(  # noqa: S310 - the operator's own gateway URL
        base.rstrip("/") + "/admin/budgets",
        headers={"authorization": f"Bearer {config.server.admin_key.reveal()}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
            rows = json.loads(resp.read())["data"]
    except urllib.error.HTTPError as exc:
        raise click.ClickException(
            f"gateway answered {exc.code}: {exc.read().decode(errors='replace')}"
        ) from None
    except OSError as exc:
        raise click.ClickException(f"cannot reach the gateway at {base}: {exc}") from None
    _emit(
        rows,
        as_json,
        ["scope", "period", "limit_usd", "spent_usd", "reserved_usd", "remaining_usd", "resets_at"],
    )


@main.command()
@config_option
@click.option("--by", "group_by", type=click.Choice(GROUP_BY_VALUES), default="team", show_default=True)
@click.option("--since", help="2026-11-01, an ISO time, or 7d / 24h ago.")
@json_option
def spend(config_path: str | None, group_by: str, since: str | None, as_json: bool) -> None:
    """Requests, tokens and cost, grouped."""
    config = _load(config_path)
    try:
        since_ts = parse_since(since)
    except SluiceError as exc:
        raise click.ClickException(exc.message) from None
    _database(config, create=False)
    rows = _with_store(config, lambda s: s.spend(group_by, since_ts))  # type: ignore[arg-type]
    out = [
        {group_by: r.group, "requests": r.requests, "errors": r.errors, "prompt_tokens": r.prompt_tokens,
         "completion_tokens": r.completion_tokens,
         "cost_usd": float(r.cost_usd) if as_json else format(r.cost_usd.normalize(), "f"),
         "cost_nusd": int(r.cost_usd.scaleb(9)), "unpriced": r.unpriced, "saved_usd": round(r.saved_usd, 9)}
        for r in rows
    ]  # fmt: skip
    columns = [
        group_by,
        "requests",
        "errors",
        "prompt_tokens",
        "completion_tokens",
        "cost_usd",
        "unpriced",
        "saved_usd",
    ]
    _emit(out, as_json, columns)
    if not as_json and since_ts:
        click.echo(f"(since {datetime.fromtimestamp(since_ts, UTC).isoformat(timespec='seconds')})", err=True)


@main.group()
def routes() -> None:
    """Inspect routing policy."""


@routes.command("explain")
@config_option
@click.option("--team", help="The caller's team.")
@click.option("--model", required=True, help="The model the request asks for.")
@click.option("--task", help="The task (x-sluice-task / metadata.task).")
@click.option("--user", help="The end user.")
@click.option("--key", "key_id", help="The gateway key id.")
@click.option("--tags", help="Comma-separated tags.")
@click.option(
    "--prompt-tokens", type=int, default=500, show_default=True, help="Prompt size `cheapest` orders by."
)
@json_option
def routes_explain(config_path: str | None, as_json: bool, prompt_tokens: int, **facts: str | None) -> None:
    """Which route and targets a request would get, and why."""
    from sluice.routing.adaptive import AdaptiveBook, AdaptiveSync
    from sluice.routing.explain import explain, explain_text
    from sluice.routing.routes import Facts

    config = _load(config_path)
    team = facts.get("team")
    if team is not None and team not in config.teams:
        declared = ", ".join(sorted(config.teams)) or "none"
        raise click.ClickException(f"unknown team '{team}' (teams declared in the policy: {declared})")
    tags = tuple(t.strip() for t in (facts.pop("tags") or "").split(",") if t.strip())
    book = AdaptiveBook(config)
    if book.models:  # adaptive models: their current shares come from the stored feedback
        _with_store(config, lambda s: AdaptiveSync(s, book).refresh())
    try:
        result = explain(config, Facts(key=facts.pop("key_id"), tags=tags, **facts), prompt_tokens, book)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(result, indent=2) if as_json else explain_text(result))


@main.group()
def shadow() -> None:
    """Shadow traffic."""


@shadow.command("report")
@config_option
@click.option("--since", help="2026-11-01, an ISO time, or 7d / 24h ago.")
@json_option
def shadow_report(config_path: str | None, since: str | None, as_json: bool) -> None:
    """Shadow calls compared with the answers they mirrored: similarity, latency, tokens, cost."""
    from sluice.routing.explain import shadow_report as report

    config = _load(config_path)
    try:
        since_ts = parse_since(since)
    except SluiceError as exc:
        raise click.ClickException(exc.message) from None
    _database(config, create=False)
    rows = report(_with_store(config, lambda s: s.shadow_rows(since_ts)))
    _emit(rows, as_json, ["route", "primary_model", "shadow_model", "calls", "shadow_errors", "similarity",
                          "primary_latency_ms", "shadow_latency_ms", "primary_cost_usd", "shadow_cost_usd"])  # fmt: skip


from sluice.cli.cache import cache  # noqa: E402
from sluice.cli.cost import prices, reconcile, report  # noqa: E402  (their own modules; registered here)
from sluice.cli.feedback import feedback  # noqa: E402
from sluice.cli.ops import db, reload  # noqa: E402
from sluice.cli.stats import stats  # noqa: E402

main.add_command(prices)
main.add_command(reconcile)
main.add_command(report)
main.add_command(feedback)
main.add_command(db)
main.add_command(reload)
main.add_command(stats)
main.add_command(cache)
