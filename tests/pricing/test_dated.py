"""Dated prices: the price in force at the request's time, across a boundary."""

from __future__ import annotations

import datetime
from decimal import Decimal

from sluice.config.model import PriceConfig
from sluice.pricing import PriceBook
from sluice.pricing.book import day_start

JAN = datetime.date(2026, 1, 1)
FEB = datetime.date(2026, 2, 1)


def _book() -> PriceBook:
    return PriceBook.load(
        {
            "gpt-4o-mini": [
                PriceConfig(input_per_mtok=1.0, output_per_mtok=2.0, effective_from=JAN),
                PriceConfig(input_per_mtok=0.5, output_per_mtok=1.0, effective_from=FEB),
            ],
            "house-model": [PriceConfig(input_per_mtok=3.0, output_per_mtok=4.0, effective_from=FEB)],
            "flat": PriceConfig(input_per_mtok=1.0, output_per_mtok=1.0),
        }
    )


def test_price_in_force_on_each_side_of_a_boundary() -> None:
    book = _book()
    feb = day_start(FEB)
    before, after = book.lookup("gpt-4o-mini", at=feb - 0.001), book.lookup("gpt-4o-mini", at=feb)
    assert before is not None and before.input_per_token == Decimal("1") / 1_000_000
    assert after is not None and after.input_per_token == Decimal("0.5") / 1_000_000
    assert before.source == after.source == "policy"


def test_before_the_first_dated_entry_the_bundled_price_applies() -> None:
    bundled = PriceBook.load().lookup("gpt-4o-mini")
    early = _book().lookup("gpt-4o-mini", at=day_start(JAN) - 1)
    assert bundled is not None and early == bundled
    assert early.source == PriceBook.load().version and early.source.startswith("litellm-")


def test_a_model_priced_only_from_a_date_is_unpriced_before_it() -> None:
    book = _book()
    assert book.lookup("house-model", at=day_start(FEB) - 1) is None
    assert book.lookup("house-model", at=day_start(FEB) + 1) is not None


def test_undated_override_applies_always_and_timeline_lists_every_price() -> None:
    book = _book()
    assert book.lookup("flat", at=0) is not None
    timeline = book.timeline("gpt-4o-mini")
    assert timeline is not None
    assert [p.effective_from for p in timeline.prices] == [None, day_start(JAN), day_start(FEB)]


def test_the_bundled_book_has_a_version_and_date() -> None:
    book = PriceBook.load()
    release, _, day = book.version.partition("/")
    assert release.startswith("litellm-") and datetime.date.fromisoformat(day)
