from __future__ import annotations

from decimal import Decimal

from sluice.config.model import PriceConfig
from sluice.pricing import PriceBook, cost, worst_case_cost
from sluice.schema.chat import PromptTokensDetails, Usage


def test_bundled_prices_and_lookup_fallbacks() -> None:
    book = PriceBook.load()
    assert len(book) > 3000
    p = book.lookup("gpt-4o-mini")
    assert p is not None and p.input_per_token == Decimal("1.5e-7") and p.output_per_token == Decimal("6e-7")
    assert book.lookup("gpt-4o-mini-2024-07-18") is not None
    assert book.lookup("openai/gpt-4o-mini") is not None
    assert book.lookup("no-such-model") is None


def test_openai_cost_counts_cached_tokens_at_cache_price() -> None:
    p = PriceBook.load().lookup("gpt-4o-mini")
    assert p is not None
    usage = Usage(
        prompt_tokens=1000,
        completion_tokens=500,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=200),
    )
    assert cost(usage, p) == 800 * Decimal("1.5e-7") + 200 * Decimal("7.5e-8") + 500 * Decimal("6e-7")


def test_cache_write_tokens_priced_for_anthropic_models() -> None:
    p = PriceBook.load().lookup("claude-sonnet-4-5")
    assert p is not None
    usage = Usage(
        prompt_tokens=1000, completion_tokens=10,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=100, cache_write_tokens=300),
    )  # fmt: skip
    expected = (
        600 * Decimal("3e-6") + 100 * Decimal("3e-7") + 300 * Decimal("3.75e-6") + 10 * Decimal("1.5e-5")
    )
    assert cost(usage, p) == expected


def test_policy_overrides_win() -> None:
    book = PriceBook.load({"gpt-4o-mini": PriceConfig(input_per_mtok=1.0, output_per_mtok=2.0)})
    p = book.lookup("gpt-4o-mini")
    assert p is not None and p.input_per_token == Decimal("0.000001")
    assert worst_case_cost(1000, 100, p) == Decimal("0.001") + Decimal("0.0002")
