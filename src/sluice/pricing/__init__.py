"""The price book (package data + policy overrides) and pure cost arithmetic."""

from sluice.pricing.book import Price, PriceBook, cost, worst_case_cost

__all__ = ["Price", "PriceBook", "cost", "worst_case_cost"]
