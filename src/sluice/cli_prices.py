"""``sluice prices show MODEL | diff FILE``: review the price book before and after an update."""

from __future__ import annotations

import datetime
import json
from decimal import Decimal
from pathlib import Path

import click

from sluice.pricing import PriceBook
from sluice.pricing.diff import diff_prices
from sluice.pricing.litellm import rows_from_litellm

_MTOK = Decimal(1_000_000)


def _book(config_path: str | None) -> PriceBook:
    from sluice.cli import _load

    return PriceBook.load(_load(config_path).prices)


def _per_mtok(rate: str, value: str) -> str:
    if rate == "per_request":
        return f"${Decimal(value).normalize():f}/request"
    return f"${(Decimal(value) * _MTOK).normalize():f}/Mtok"


@click.group()
def prices() -> None:
    """The price book: what each model costs, and what an update would change."""


@prices.command("show")
@click.option("--config", "config_path", envvar="SLUICE_CONFIG", type=click.Path(dir_okay=False),
              help="Policy file (its prices: override the bundled book).")  # fmt: skip
@click.option("--provider", help="Provider type, when the name alone is ambiguous (e.g. bedrock).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.argument("model")
def prices_show(config_path: str | None, provider: str | None, as_json: bool, model: str) -> None:
    """Every price of MODEL over time, where each comes from, and which is in force now."""
    book = _book(config_path)
    timeline = book.timeline(model, provider)
    if timeline is None:
        raise click.ClickException(f"'{model}' has no price: its requests are recorded as unpriced")
    now = book.lookup(model, provider)
    rows = [
        {
            "effective_from": _date(p.effective_from),
            "source": p.source,
            "in_force": p is now,
            "rates": p.rates(),
        }
        for p in timeline.prices
    ]
    if as_json:
        click.echo(json.dumps({"model": model, "book_version": book.version, "prices": rows}, indent=2))
        return
    click.echo(f"{model}  (bundled book {book.version})")
    for r in rows:
        rates = ", ".join(f"{k} {_per_mtok(k, v)}" for k, v in r["rates"].items())  # type: ignore[attr-defined]
        mark = "*" if r["in_force"] else " "
        click.echo(f" {mark} from {r['effective_from']:<10}  {r['source']:<28}  {rates}")


@prices.command("diff")
@click.option("--config", "config_path", envvar="SLUICE_CONFIG", type=click.Path(dir_okay=False),
              help="Policy file (its prices: override the bundled book).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def prices_diff(config_path: str | None, as_json: bool, file: str) -> None:
    """What a LiteLLM-format price list (FILE) would change against the book in force now."""
    try:
        data = json.loads(Path(file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"{file}: not a JSON price list ({exc})") from None
    if not isinstance(data, dict):
        raise click.ClickException(f"{file}: expected an object of model name -> price entry")
    diff = diff_prices(_book(config_path), rows_from_litellm(data))
    if as_json:
        changed = [{"model": c.model, "rate": c.rate, "old": c.old, "new": c.new} for c in diff.changed]
        click.echo(json.dumps({"added": diff.added, "removed": diff.removed, "changed": changed}, indent=2))
        return
    click.echo(
        f"{len(diff.changed)} rates changed, {len(diff.added)} models added, {len(diff.removed)} removed"
    )
    for c in diff.changed:
        old = _per_mtok(c.rate, c.old) if c.old else "-"
        new = _per_mtok(c.rate, c.new) if c.new else "-"
        click.echo(f"  ~ {c.model}  {c.rate}: {old} -> {new}")
    for name in diff.added:
        click.echo(f"  + {name}")
    for name in diff.removed:
        click.echo(f"  - {name}")


def _date(ts: float | None) -> str:
    if ts is None:
        return "always"
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).date().isoformat()
