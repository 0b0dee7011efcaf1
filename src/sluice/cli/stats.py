"""``sluice stats``: request counts, error rates by source, and latency / TTFT tails from the log."""

from __future__ import annotations

import json
from typing import Any

import click

from sluice.store.stats import STATS_BY_VALUES


@click.command()
@click.option("--config", "config_path", envvar="SLUICE_CONFIG", type=click.Path(dir_okay=False),
              help="Policy file (default: $SLUICE_CONFIG, else the bundled demo policy).")  # fmt: skip
@click.option("--by", "by", type=click.Choice(STATS_BY_VALUES), default="model", show_default=True)
@click.option("--since", help="2026-11-01, an ISO time, or 7d / 24h ago (default: the whole log).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def stats(config_path: str | None, by: str, since: str | None, as_json: bool) -> None:
    """Requests, error rates by source, p50/p95/p99/p999 latency and time to first token."""
    from sluice.cli import _emit, _load, _with_store
    from sluice.errors import SluiceError
    from sluice.store.views import parse_since

    config = _load(config_path)
    try:
        since_ts = parse_since(since)
    except SluiceError as exc:
        raise click.ClickException(exc.message) from None
    rows = [r.to_dict(by) for r in _with_store(config, lambda s: s.latency_stats(by, since_ts))]  # type: ignore[arg-type]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    _emit([_flat(r) for r in rows], False, [by, "requests", "error_rate", "provider_errors", "gateway_errors",
          "client_errors", "p50_ms", "p95_ms", "p99_ms", "p999_ms", "ttft_p50_ms", "ttft_p99_ms"])  # fmt: skip


def _flat(r: dict[str, Any]) -> dict[str, Any]:
    lat, ttft, src = r["latency_ms"], r["ttft_ms"], r["errors_by_source"]
    return {
        **r, "provider_errors": src["provider"], "gateway_errors": src["gateway"], "client_errors": src["client"],
        "p50_ms": lat["p50"], "p95_ms": lat["p95"], "p99_ms": lat["p99"], "p999_ms": lat["p999"],
        "ttft_p50_ms": ttft["p50"], "ttft_p99_ms": ttft["p99"],
    }  # fmt: skip
