"""The ledger against a bill: exact joins on ids, totals per day and model, and what explains a gap."""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from decimal import Decimal

from sluice.pricing.bills import BillLine
from sluice.pricing.reconcile import charges_for, reconcile

TS = datetime.datetime(2026, 1, 1, 12, tzinfo=datetime.UTC).timestamp()


@dataclass(frozen=True)
class Row:
    id: str
    ts: float
    team: str | None
    attempts_detail: str


def _row(rid: str, *attempts: dict[str, object], team: str = "eng") -> Row:
    return Row(rid, TS, team, json.dumps(list(attempts)))


def _attempt(
    provider: str, up: str | None, p: int, c: int, nusd: int | None, **kw: object
) -> dict[str, object]:
    return {"provider": provider, "model": "gpt-4o-mini", "upstream_id": up, "cost_nusd": nusd,
            "usage": {"prompt_tokens": p, "completion_tokens": c, "prompt_tokens_details": {"cached_tokens": 0}},
            **kw}  # fmt: skip


ROWS = [
    _row("r1", _attempt("openai", "up-1", 10, 5, 4_500)),
    # A retry that billed on another account, then this one: only this account's attempt counts.
    _row("r2", _attempt("azure", "az-1", 10, 0, 1_500), _attempt("openai", "up-2", 10, 5, 4_500), team="ops"),
    _row("r3", {"provider": "openai", "model": "gpt-4o-mini", "usage": None}),  # failed, nothing billed
]


def test_charges_are_per_attempt_of_the_account() -> None:
    charges = list(charges_for(ROWS, "openai"))
    assert [(c.request_id, c.upstream_id, c.team) for c in charges] == [
        ("r1", "up-1", "eng"),
        ("r2", "up-2", "ops"),
    ]


def test_exact_join_on_provider_ids_matches() -> None:
    bill = [
        BillLine("2026-01-01", "gpt-4o-mini-2024-07-18", f"up-{i}", 1, 10, 5, 0, Decimal("0.0000045"))
        for i in (1, 2)
    ]
    result = reconcile(charges_for(ROWS, "openai"), bill)
    assert result.ok, result
    (g,) = result.groups
    assert g.model == "gpt-4o-mini" and g.ledger.cost_usd == g.bill.cost_usd == Decimal("0.000009")
    assert g.teams == {"eng": Decimal("0.0000045"), "ops": Decimal("0.0000045")}


def test_differences_name_the_requests_behind_them() -> None:
    bill = [
        BillLine(
            "2026-01-01", "gpt-4o-mini", "up-1", 1, 10, 7, 0, Decimal("0.0000057")
        ),  # more output billed
        BillLine("2026-01-01", "gpt-4o-mini", "up-9", 1, 3, 3, 0, Decimal("0.000001")),  # never recorded
    ]
    result = reconcile(charges_for(ROWS, "openai"), bill)
    assert not result.ok
    assert result.only_in_bill == ["up-9"] and result.only_in_ledger == ["r2"]
    assert result.mismatched == [("r1", "tokens 10/5 vs 10/7; cost 0.0000045 vs 0.0000057")]
    assert "r2 (not in the bill)" in result.groups[0].explain


def test_aggregate_exports_compare_totals_and_list_estimates() -> None:
    rows = [*ROWS, _row("r4", _attempt("openai", None, 10, 2, 3_000, estimated=True))]
    bill = [BillLine("2026-01-01", "gpt-4o-mini", requests=3, input_tokens=30, output_tokens=14)]
    result = reconcile(charges_for(rows, "openai"), bill)
    (g,) = result.groups
    assert g.ledger.tokens() == (30, 12, 0) and not g.matches
    assert g.explain == ["r4 (estimated)"] and result.estimated_usd == Decimal("0.000003")
    assert g.cost_diff is None  # a usage export has no amounts


def test_unpriced_attempts_are_counted_not_zero() -> None:
    rows = [_row("r5", _attempt("openai", "up-5", 10, 5, None))]
    (g,) = reconcile(charges_for(rows, "openai"), []).groups
    assert g.unpriced == 1 and g.ledger.cost_usd is None
