"""`sluice prices diff` and `show`: review a price update before applying it."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from sluice.cli import main
from sluice.config.model import PriceConfig
from sluice.pricing import PriceBook
from sluice.pricing.diff import diff_prices
from sluice.pricing.litellm import rows_from_litellm

ENTRY = {"mode": "chat", "litellm_provider": "openai", "input_cost_per_token": 1.5e-07, "output_cost_per_token": 6e-07,
         "cache_read_input_token_cost": 7.5e-08}  # fmt: skip


def test_diff_reports_changed_added_and_removed() -> None:
    book = PriceBook.load({"house": PriceConfig(input_per_mtok=1, output_per_mtok=1)})
    data = {
        "gpt-4o-mini": {**ENTRY, "output_cost_per_token": 5e-07},
        "brand-new": ENTRY,
        "house": {**ENTRY},  # the policy's own price is never overridden by a list
        "sample_spec": {"mode": "chat"},
    }
    diff = diff_prices(book, rows_from_litellm(data))
    assert [(c.model, c.rate, c.old, c.new) for c in diff.changed] == [
        ("gpt-4o-mini", "out", "0.0000006", "0.0000005")
    ]
    assert diff.added == ["brand-new"]
    assert "gpt-4o-mini" not in diff.removed and "claude-sonnet-4-5" in diff.removed


def test_the_bundled_source_diffs_clean_against_itself() -> None:
    src = Path(__file__).resolve().parents[3] / "shared/reference/model-prices.json"
    if not src.exists():
        return  # the reference list lives beside the project, not in it
    diff = diff_prices(PriceBook.load(), rows_from_litellm(json.loads(src.read_text())))
    assert (diff.changed, diff.added, diff.removed) == ([], [], [])


def test_cli_show_and_diff(tmp_path: Path) -> None:
    runner = CliRunner()
    shown = runner.invoke(main, ["prices", "show", "claude-sonnet-4-5", "--json"])
    assert shown.exit_code == 0, shown.output
    body = json.loads(shown.output)
    assert body["prices"][0]["rates"]["cache_write_1h"] == "0.000006"
    assert body["prices"][0]["in_force"] is True
    unknown = runner.invoke(main, ["prices", "show", "no-such-model"])
    assert unknown.exit_code != 0 and "unpriced" in unknown.output
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"gpt-4o-mini": {**ENTRY, "input_cost_per_token": 2e-07}}))
    out = runner.invoke(main, ["prices", "diff", str(path)])
    assert out.exit_code == 0, out.output
    assert "gpt-4o-mini  in: $0.15/Mtok -> $0.2/Mtok" in out.output
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2")
    assert "not a JSON price list" in runner.invoke(main, ["prices", "diff", str(bad)]).output
