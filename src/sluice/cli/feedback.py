"""``sluice feedback report``: what callers said about the answers (``POST /v1/feedback``)."""

from __future__ import annotations

import click


@click.group()
def feedback() -> None:
    """Feedback on answers."""


@feedback.command("report")
@click.option("--config", "config_path", envvar="SLUICE_CONFIG", type=click.Path(dir_okay=False),
              help="Policy file (default: $SLUICE_CONFIG, else the bundled demo policy).")  # fmt: skip
@click.option("--metric", help="Only this metric (declared under feedback.metrics).")
@click.option("--by", "group_by", type=click.Choice(["metric", "route", "model", "target", "tag"]), default="metric",
              show_default=True)  # fmt: skip
@click.option("--since", help="2026-11-01, an ISO time, or 7d / 24h ago.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def report(
    config_path: str | None, metric: str | None, group_by: str, since: str | None, as_json: bool
) -> None:
    """Counts, means and 95% confidence intervals per metric and group."""
    from sluice.cli import _emit, _load, _with_store
    from sluice.errors import SluiceError
    from sluice.routing.feedback import summarise
    from sluice.store.views import parse_since

    config = _load(config_path)
    if metric is not None and metric not in config.feedback.metrics:
        raise click.ClickException(f"unknown metric '{metric}' (declare it under feedback.metrics)")
    try:
        since_ts = parse_since(since)
    except SluiceError as exc:
        raise click.ClickException(exc.message) from None
    rows = _with_store(config, lambda s: s.feedback_rows(metric, since_ts))
    out = summarise(rows, config.feedback, group_by)  # type: ignore[arg-type]
    cols = (
        ["metric"] + ([group_by] if group_by != "metric" else []) + ["count", "mean", "ci95_low", "ci95_high"]
    )
    _emit(out, as_json, cols)
