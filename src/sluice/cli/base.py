"""What every CLI command shares: finding and loading the policy, the store, table output.
(Below ``cli`` and its command modules in the layers, so each of them can use it.)"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import click

from sluice.config import Config, load_config
from sluice.errors import ConfigError, SluiceError
from sluice.store.base import Store, StoreUnavailable, create_store, store_location
from sluice.store.sqlite import sqlite_path

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
