"""Compare a price list with the book in force, so an operator can review an update first."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from sluice.pricing.book import POLICY, PriceBook, price_from_row


@dataclass(frozen=True, slots=True)
class RateChange:
    model: str
    #: A key of :meth:`Price.rates` (``in``, ``out``, ``cache_read``, ...).
    rate: str
    old: str | None
    new: str | None


@dataclass(slots=True)
class PriceDiff:
    #: Priced in the new list, unpriced by the book in force.
    added: list[str] = field(default_factory=list)
    #: Priced by the bundled book, absent from the new list (policy prices are never "removed").
    removed: list[str] = field(default_factory=list)
    changed: list[RateChange] = field(default_factory=list)


def diff_prices(
    book: PriceBook, rows: Mapping[str, Mapping[str, object]], at: float | None = None
) -> PriceDiff:
    """What applying ``rows`` (the book's row format) would change, per model and rate."""
    out = PriceDiff()
    for name in sorted(rows):
        current = book.lookup(name, at=at)
        if current is None:
            out.added.append(name)
            continue
        if current.source == POLICY:
            continue  # the policy's own price wins over any bundled list
        old, new = current.rates(), price_from_row(rows[name], "new").rates()
        for rate in sorted(set(old) | set(new)):
            was, now = old.get(rate), new.get(rate)
            if _value(was) != _value(now):
                out.changed.append(RateChange(name, rate, was, now))
    out.removed = [n for n in book.bundled_names() if n not in rows]
    return out


def _value(text: str | None) -> Decimal | None:
    return Decimal(text) if text is not None else None
