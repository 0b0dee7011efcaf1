"""Every token class priced, from each provider adapter's real usage object."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from sluice.config.model import PriceConfig
from sluice.pricing import PriceBook, cost, worst_case_cost
from sluice.providers.anthropic.chat import from_anthropic_response
from sluice.providers.bedrock.chat import usage_from_bedrock
from sluice.providers.gemini.chat import usage_from_gemini
from sluice.providers.openai.chat import from_openai_response

M = Decimal(1_000_000)


def test_anthropic_5m_and_1h_cache_writes_priced_apart() -> None:
    wire = {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 50, "output_tokens": 20, "cache_read_input_tokens": 1000,
                  "cache_creation_input_tokens": 3000,
                  "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000},
                  "service_tier": "standard"},
    }  # fmt: skip
    usage = from_anthropic_response(msgspec.json.encode(wire), "a").usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.cached_tokens, usage.cache_write_tokens) == (4050, 1000, 3000)
    assert usage.cache_write_1h_tokens == 2000
    price = PriceBook.load().lookup("claude-sonnet-4-5")
    assert price is not None
    expected = (50 * Decimal(3) + 1000 * Decimal("0.3") + 1000 * Decimal("3.75") + 2000 * Decimal(6)
                + 20 * Decimal(15)) / M  # fmt: skip
    assert cost(usage, price) == expected


def test_openai_reasoning_tokens_at_their_own_price_when_the_book_has_one() -> None:
    wire = {
        "id": "c1", "object": "chat.completion", "created": 1, "model": "o-house",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "4"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 500, "total_tokens": 600,
                  "prompt_tokens_details": {"cached_tokens": 40, "audio_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": 450, "audio_tokens": 0}},
    }  # fmt: skip
    usage = from_openai_response(msgspec.json.encode(wire), "o").usage
    assert usage is not None and usage.reasoning_tokens == 450 and usage.cached_tokens == 40
    book = PriceBook.load({"o-house": PriceConfig(input_per_mtok=1, output_per_mtok=4, cache_read_per_mtok=0.5,
                                                  reasoning_per_mtok=8)})  # fmt: skip
    price = book.lookup("o-house")
    assert price is not None
    assert cost(usage, price) == (60 * 1 + 40 * Decimal("0.5") + 50 * 4 + 450 * 8) / M
    plain = PriceBook.load({"o-house": PriceConfig(input_per_mtok=1, output_per_mtok=4)}).lookup("o-house")
    assert plain is not None and cost(usage, plain) == (100 * 1 + 500 * 4) / M  # reasoning at output price


def test_gemini_thoughts_are_reasoning_and_billed_as_output() -> None:
    usage = usage_from_gemini(
        {"promptTokenCount": 120, "candidatesTokenCount": 30, "totalTokenCount": 250,
         "cachedContentTokenCount": 20, "thoughtsTokenCount": 100}
    )  # fmt: skip
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.reasoning_tokens, usage.cached_tokens) == (
        120, 130, 100, 20,
    )  # fmt: skip
    price = PriceBook.load().lookup("gemini-2.5-flash")
    assert price is not None and price.cache_read_per_token is not None
    expected = 100 * price.input_per_token + 20 * price.cache_read_per_token + 130 * price.output_per_token
    assert cost(usage, price) == expected


def test_bedrock_cache_read_and_write() -> None:
    usage = usage_from_bedrock(
        {"inputTokens": 8, "outputTokens": 2, "totalTokens": 1010, "cacheReadInputTokens": 600,
         "cacheWriteInputTokens": 400}
    )  # fmt: skip
    assert usage is not None and (usage.prompt_tokens, usage.cached_tokens, usage.cache_write_tokens) == (
        1008,
        600,
        400,
    )


def test_per_request_surcharge_and_worst_case() -> None:
    book = PriceBook.load({"search-model": PriceConfig(input_per_mtok=1, output_per_mtok=2, per_request_usd=0.01,
                                                       reasoning_per_mtok=5)})  # fmt: skip
    price = book.lookup("search-model")
    assert price is not None
    from sluice.schema.chat import Usage

    assert cost(Usage(prompt_tokens=10, completion_tokens=10), price) == Decimal("0.01") + (10 + 20) / M
    # The worst case takes the dearer of output and reasoning for every output token.
    assert worst_case_cost(10, 10, price) == Decimal("0.01") + (10 + 50) / M
