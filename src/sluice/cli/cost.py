"""``sluice prices``, ``sluice reconcile`` and ``sluice report``: the price book, the bill, the reports."""

from __future__ import annotations

import datetime
import json
import time
from dataclasses import asdict
from decimal import Decimal
from pathlib import Path

import click

from sluice.pricing import PriceBook
from sluice.pricing.diff import diff_prices
from sluice.pricing.litellm import rows_from_litellm
from sluice.pricing.reconcile import Reconciliation
from sluice.store.base import Store
from sluice.store.records import LedgerRow

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


@click.command()
@click.option("--config", "config_path", envvar="SLUICE_CONFIG", type=click.Path(dir_okay=False),
              help="Policy file (its store: holds the ledger).")  # fmt: skip
@click.option("--provider", required=True, help="The provider account (a name under providers:).")
@click.option("--from", "file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The provider's usage export (OpenAI usage or costs API, Anthropic usage report, or CSV).")  # fmt: skip
@click.option("--since", help="2026-11-01, an ISO time, or 7d / 24h ago (default: 31 days ago).")
@click.option("--until", help="The end (exclusive), in the same forms (default: now).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def reconcile(
    config_path: str | None, provider: str, file: str, since: str | None, until: str | None, as_json: bool
) -> None:
    """Compare the ledger with a provider's bill, per day and model, with the requests behind any
    difference. Exits 1 when they differ."""
    from sluice.cli import _load, _with_store
    from sluice.errors import SluiceError
    from sluice.pricing.bills import BillFormatError, read_bill
    from sluice.pricing.reconcile import charges_for
    from sluice.pricing.reconcile import reconcile as compare
    from sluice.store.views import parse_since

    config = _load(config_path)
    if provider not in config.providers:
        raise click.ClickException(
            f"unknown provider '{provider}' (the policy has: {', '.join(config.providers)})"
        )
    try:
        lines = read_bill(Path(file).read_text(encoding="utf-8"))
        start = parse_since(since) or time.time() - 31 * 86400
        end = parse_since(until) or time.time()
    except BillFormatError as exc:
        raise click.ClickException(f"{file}: {exc}") from None
    except SluiceError as exc:
        raise click.ClickException(exc.message) from None
    lines = [line for line in lines if line.day is None or _day_in(line.day, start, end)]

    async def read(store: Store) -> list[LedgerRow]:
        rows: list[LedgerRow] = []
        while True:
            page = await store.ledger_rows(start, end, rows[-1].id if rows else "")
            rows.extend(page)
            if len(page) < 10_000:
                return rows

    result = compare(charges_for(_with_store(config, read), provider), lines)
    if as_json:
        click.echo(json.dumps(_as_json(result), indent=2, default=str))
    else:
        _print(result)
    if not result.ok:
        raise SystemExit(1)


def _day_in(day: str, start: float, end: float) -> bool:
    ts = datetime.datetime.fromisoformat(day).replace(tzinfo=datetime.UTC).timestamp()
    return start - 86400 < ts < end


def _as_json(r: Reconciliation) -> dict[str, object]:
    groups = [
        {"day": g.day, "model": g.model, "matches": g.matches, "ledger": asdict(g.ledger), "bill": asdict(g.bill),
         "cost_diff_usd": g.cost_diff, "ledger_by_team": g.teams, "unpriced": g.unpriced, "explain": g.explain}
        for g in r.groups
    ]  # fmt: skip
    return {"ok": r.ok, "groups": groups, "only_in_ledger": r.only_in_ledger, "only_in_bill": r.only_in_bill,
            "mismatched": r.mismatched, "estimated_usd": r.estimated_usd}  # fmt: skip


def _print(r: Reconciliation) -> None:
    click.echo(f"{'DAY':<10}  {'MODEL':<28}  {'REQUESTS L/B':>13}  {'INPUT L/B':>21}  {'OUTPUT L/B':>19}  "
               f"{'COST LEDGER':>14}  {'COST BILL':>14}  {'DIFF':>12}")  # fmt: skip
    for g in r.groups:
        mark = " " if g.matches else "!"
        diff = g.cost_diff
        click.echo(
            f"{g.day or '-':<10}  {(g.model or '-')[:28]:<28}  {g.ledger.requests:>6}/{g.bill.requests:<6}  "
            f"{g.ledger.input_tokens:>10}/{g.bill.input_tokens:<10}  {g.ledger.output_tokens:>9}/{g.bill.output_tokens:<9}  "
            f"{_usd(g.ledger.cost_usd):>14}  {_usd(g.bill.cost_usd):>14}  {_usd(diff):>12} {mark}"
        )  # fmt: skip
        if not g.matches:
            teams = ", ".join(f"{t} {_usd(c)}" for t, c in sorted(g.teams.items()))
            click.echo(
                f"{'':12}ledger by team: {teams or '-'}" + (f"; {g.unpriced} unpriced" if g.unpriced else "")
            )
            for item in g.explain:
                click.echo(f"{'':12}{item}")
    for label, ids in (("only in the ledger", r.only_in_ledger), ("only in the bill", r.only_in_bill)):
        if ids:
            click.echo(f"{label}: {', '.join(ids)}")
    if r.estimated_usd:
        click.echo(f"estimated requests in the ledger: {_usd(r.estimated_usd)} (their error is at most this)")
    click.echo("ledger = bill" if r.ok else "the ledger and the bill differ")


def _usd(value: Decimal | None) -> str:
    return "-" if value is None else f"${value.quantize(Decimal('0.000001'))}"


_PERIODS = {"day": "daily", "week": "weekly", "month": "monthly", "daily": "daily", "weekly": "weekly",
            "monthly": "monthly"}  # fmt: skip


@click.command()
@click.option("--config", "config_path", envvar="SLUICE_CONFIG", type=click.Path(dir_okay=False),
              help="Policy file (its store: holds the ledger; alerts.webhook receives --send).")  # fmt: skip
@click.option("--period", type=click.Choice(sorted(_PERIODS)), default="week", show_default=True)
@click.option("--send", is_flag=True, help="POST it to alerts.webhook as well (as the schedule does).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def report(config_path: str | None, period: str, send: bool, as_json: bool) -> None:
    """Each team's spend, top models and change on the period before, for the last whole period
    (UTC days, ISO weeks from Monday, calendar months)."""
    import asyncio

    import msgspec

    from sluice.cli import _load, _with_store
    from sluice.store.reports import last_period, make_report, report_text
    from sluice.transport.client import Transport
    from sluice.transport.webhook import Webhook, WebhookFailed

    config = _load(config_path)
    which = last_period(_PERIODS[period], time.time())
    data = _with_store(config, lambda store: make_report(store, which))
    click.echo(json.dumps(data, indent=2) if as_json else report_text(data))
    if not send:
        return
    hook = config.alerts.webhook
    if hook is None:
        raise click.ClickException("--send needs alerts.webhook in the policy")

    async def post() -> None:
        transport = Transport()
        try:
            await Webhook(transport, "reports", hook.reveal(), timeout_s=config.alerts.timeout_s).post(
                msgspec.json.encode(data)
            )
        finally:
            await transport.close()

    try:
        asyncio.run(post())
    except WebhookFailed as exc:
        raise click.ClickException(f"the webhook refused the report: {exc}") from None
    click.echo("sent to alerts.webhook", err=True)
