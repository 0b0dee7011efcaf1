"""The price book (package data + policy overrides) and pure cost arithmetic."""

from sluice.pricing.book import (
    Price,
    PriceBook,
    cost,
    from_nano_usd,
    to_nano_usd,
    worst_case_cost,
)  # fmt: skip

__all__ = ["Price", "PriceBook", "cost", "from_nano_usd", "to_nano_usd", "worst_case_cost"]
