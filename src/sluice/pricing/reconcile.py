"""The ledger against a provider's bill: differences per day and model, and the requests behind them.

The ledger side is every billed attempt sent to one provider account (retries, fallbacks and
shadow calls included), read from the request records' ``attempts_detail``. Where the export
carries request ids (a CSV), the join is exact — on the provider's id (``upstream_id``) or the
gateway's request id — and every id on one side only, or with other tokens or cost, is listed.
Otherwise totals are compared per day and model, and the ledger's estimated requests (streams cut
before the provider reported usage) are listed as the likely explanation. Pure.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from sluice.pricing.bills import BillLine
from sluice.pricing.book import base_model

#: Requests named per group or list (the rest are counted, not listed).
MAX_LISTED = 20


class LedgerEntry(Protocol):
    """A request record as reconciliation reads it (``sluice.store.records.LedgerRow``)."""

    @property
    def id(self) -> str: ...
    @property
    def ts(self) -> float: ...
    @property
    def team(self) -> str | None: ...
    @property
    def attempts_detail(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Charge:
    """One attempt a provider billed, as the ledger has it."""

    request_id: str
    day: str
    team: str | None
    model: str
    upstream_id: str | None
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cost_nusd: int | None
    estimated: bool


def charges_for(rows: Iterable[LedgerEntry], provider: str) -> Iterator[Charge]:
    for row in rows:
        day = datetime.datetime.fromtimestamp(row.ts, datetime.UTC).date().isoformat()
        for a in json.loads(row.attempts_detail or "[]"):
            usage = a.get("usage")
            if a.get("provider") != provider or not usage:
                continue
            details = usage.get("prompt_tokens_details") or {}
            yield Charge(
                row.id, day, row.team, str(a.get("model")), a.get("upstream_id"),
                int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0),
                int(details.get("cached_tokens") or 0), a.get("cost_nusd"), bool(a.get("estimated")),
            )  # fmt: skip


@dataclass(slots=True)
class Totals:
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    #: None when that side has no cost (a usage export without amounts, or unpriced requests).
    cost_usd: Decimal | None = None

    def add(self, input_tokens: int, output_tokens: int, cached: int, cost: Decimal | None, n: int) -> None:
        self.requests += n
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.cached_tokens += cached
        if cost is not None:
            self.cost_usd = (self.cost_usd or Decimal(0)) + cost

    def tokens(self) -> tuple[int, int, int]:
        return self.input_tokens, self.output_tokens, self.cached_tokens


@dataclass(slots=True)
class GroupDiff:
    day: str | None
    model: str | None
    ledger: Totals = field(default_factory=Totals)
    bill: Totals = field(default_factory=Totals)
    #: The ledger's cost in this group, by team.
    teams: dict[str, Decimal] = field(default_factory=dict)
    #: Requests that explain a difference (estimated ones; with ids: those on one side only).
    explain: list[str] = field(default_factory=list)
    unpriced: int = 0

    @property
    def cost_diff(self) -> Decimal | None:
        if self.ledger.cost_usd is None or self.bill.cost_usd is None:
            return None
        return self.ledger.cost_usd - self.bill.cost_usd

    @property
    def matches(self) -> bool:
        tokens_ok = self.bill.requests == 0 or self.ledger.tokens() == self.bill.tokens()
        diff = self.cost_diff
        return tokens_ok and (diff is None or abs(diff) < Decimal("0.005"))


@dataclass(slots=True)
class Reconciliation:
    groups: list[GroupDiff]
    #: With request ids: ids the ledger has and the bill does not, and the reverse.
    only_in_ledger: list[str] = field(default_factory=list)
    only_in_bill: list[str] = field(default_factory=list)
    #: With request ids: (id, what differs) for ids on both sides that disagree.
    mismatched: list[tuple[str, str]] = field(default_factory=list)
    #: The ledger's cost of its estimated requests (their possible error is at most this).
    estimated_usd: Decimal = Decimal(0)

    @property
    def ok(self) -> bool:
        return all(g.matches for g in self.groups) and not (
            self.only_in_ledger or self.only_in_bill or self.mismatched
        )


def reconcile(charges: Iterable[Charge], bill: Iterable[BillLine]) -> Reconciliation:
    groups: dict[tuple[str | None, str | None], GroupDiff] = {}

    def group(day: str | None, model: str | None) -> GroupDiff:
        key = (day, base_model(model) if model else None)
        if key not in groups:
            groups[key] = GroupDiff(*key)
        return groups[key]

    out = Reconciliation([])
    ledger_by_id: dict[str, Charge] = {}
    for c in charges:
        g = group(c.day, c.model)
        cost = Decimal(c.cost_nusd).scaleb(-9) if c.cost_nusd is not None else None
        g.ledger.add(c.input_tokens, c.output_tokens, c.cached_tokens, cost, 1)
        g.unpriced += cost is None
        if cost is not None:
            g.teams[c.team or "-"] = g.teams.get(c.team or "-", Decimal(0)) + cost
        if c.estimated:
            out.estimated_usd += cost or Decimal(0)
            _note(g.explain, f"{c.request_id} (estimated)")
        ledger_by_id[c.upstream_id or c.request_id] = c
        if c.upstream_id:
            ledger_by_id.setdefault(c.request_id, c)
    billed_ids: set[str] = set()
    for line in bill:
        matched = ledger_by_id.get(line.request_id) if line.request_id is not None else None
        # A line joined by id belongs with its charge (an export may name neither day nor model).
        g = (
            group(line.day or matched.day, line.model or matched.model)
            if matched
            else group(line.day, line.model)
        )
        g.bill.add(line.input_tokens, line.output_tokens, line.cached_tokens, line.cost_usd, line.requests)
        if line.request_id is not None:
            billed_ids.add(line.request_id)
            _match(out, g, matched, line)
    if billed_ids:
        seen: set[str] = set()
        for key, c in ledger_by_id.items():
            if c.request_id in seen:
                continue
            seen.add(c.request_id)
            if (
                key not in billed_ids
                and c.request_id not in billed_ids
                and (c.upstream_id or "") not in billed_ids
            ):
                _note(out.only_in_ledger, c.request_id)
                _note(group(c.day, c.model).explain, f"{c.request_id} (not in the bill)")
    out.groups = sorted(groups.values(), key=lambda g: (g.day or "", g.model or ""))
    return out


def _match(out: Reconciliation, g: GroupDiff, c: Charge | None, line: BillLine) -> None:
    assert line.request_id is not None
    if c is None:
        _note(out.only_in_bill, line.request_id)
        _note(g.explain, f"{line.request_id} (not in the ledger)")
        return
    diffs = []
    if (c.input_tokens, c.output_tokens) != (line.input_tokens, line.output_tokens):
        diffs.append(f"tokens {c.input_tokens}/{c.output_tokens} vs {line.input_tokens}/{line.output_tokens}")
    if line.cost_usd is not None and c.cost_nusd is not None:
        ledger_cost = Decimal(c.cost_nusd).scaleb(-9)
        if abs(ledger_cost - line.cost_usd) >= Decimal("0.000001"):
            diffs.append(f"cost {ledger_cost.normalize():f} vs {line.cost_usd.normalize():f}")
    if diffs:
        out.mismatched.append((c.request_id, "; ".join(diffs)))
        _note(g.explain, f"{c.request_id} ({'; '.join(diffs)})")


def _note(items: list[str], item: str) -> None:
    if len(items) < MAX_LISTED:
        items.append(item)
