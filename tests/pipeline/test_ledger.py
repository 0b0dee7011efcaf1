"""The ledger: exact nano-USD per record, the price charged kept with it, unpriced never $0."""

from __future__ import annotations

import datetime
import json

from sluice.config.model import PriceConfig
from sluice.pipeline.accounting import Accounting
from sluice.pricing import PriceBook
from sluice.pricing.book import day_start
from sluice.schema.chat import ChatResponse, Choice, PromptTokensDetails, ResponseMessage, Usage
from sluice.schema.context import Attempt, RequestContext, Result
from tests.pipeline.test_accounting import Capture, _ctx


def _acc(prices: dict[str, PriceConfig | list[PriceConfig]] | None = None) -> tuple[Accounting, Capture]:
    cap = Capture()
    return Accounting(cap, PriceBook.load(prices), {"up": "openai"}, log_access=False), cap


def _answer(usage: Usage):  # type: ignore[no-untyped-def]
    async def terminal(ctx: RequestContext) -> Result:
        return ChatResponse(choices=[Choice(message=ResponseMessage(content="x"))], usage=usage)

    return terminal


async def test_cost_is_exact_nano_usd_with_the_price_it_was_charged_at() -> None:
    acc, cap = _acc()
    usage = Usage(
        prompt_tokens=1001, completion_tokens=333, prompt_tokens_details=PromptTokensDetails(cached_tokens=7)
    )
    await acc.middleware(_ctx(), _answer(usage))
    (r,) = cap.records
    # gpt-4o-mini: $0.15 in, $0.075 cached, $0.60 out per Mtok. 994*150 + 7*75 + 333*600 nano-USD.
    assert r.cost_nusd == 994 * 150 + 7 * 75 + 333 * 600
    (price,) = json.loads(r.prices or "[]")
    assert price["model"] == "gpt-4o-mini" and price["source"].startswith("litellm-")
    assert price["rates"] == {"in": "0.00000015", "out": "0.0000006", "cache_read": "0.000000075"}
    assert r.cost_estimated is False


async def test_a_later_price_change_never_rewrites_the_charge() -> None:
    acc, cap = _acc({"gpt-4o-mini": [PriceConfig(input_per_mtok=1, output_per_mtok=1,
                                                 effective_from=datetime.date(2030, 1, 1))]})  # fmt: skip
    ctx = _ctx()
    await acc.middleware(ctx, _answer(Usage(prompt_tokens=10, completion_tokens=10)))
    later = _ctx()
    later.started_wall = day_start(datetime.date(2030, 1, 2))
    await acc.middleware(later, _answer(Usage(prompt_tokens=10, completion_tokens=10)))
    now_rec, later_rec = cap.records
    assert now_rec.cost_nusd == 10 * 150 + 10 * 600
    assert later_rec.cost_nusd == 10 * 1000 + 10 * 1000
    assert json.loads(later_rec.prices or "[]")[0]["source"] == "policy"


async def test_unpriced_model_is_recorded_as_unpriced_not_zero() -> None:
    acc, cap = _acc()
    ctx = _ctx()
    ctx.served_model = "house-model-without-a-price"
    await acc.middleware(ctx, _answer(Usage(prompt_tokens=10, completion_tokens=10)))
    (r,) = cap.records
    assert r.cost_nusd is None and r.cost_usd is None and r.prompt_tokens == 10
    assert json.loads(r.prices or "[]")[0]["source"] == "unpriced"


async def test_every_billed_attempt_is_charged_and_an_estimate_is_marked() -> None:
    acc, cap = _acc()
    ctx = _ctx()
    ctx.attempts = [
        Attempt(provider="up", model="gpt-4o-mini", usage=Usage(prompt_tokens=100, completion_tokens=20), estimated=True),
        Attempt(provider="up", model="gpt-4o-mini", usage=Usage(prompt_tokens=100, completion_tokens=30,
                prompt_tokens_details=PromptTokensDetails(cached_tokens=50))),
    ]  # fmt: skip
    await acc.middleware(ctx, _answer(Usage(prompt_tokens=100, completion_tokens=30)))
    (r,) = cap.records
    first, second = ctx.attempts
    assert first.cost_nusd == 100 * 150 + 20 * 600 and second.cost_nusd == 50 * 150 + 50 * 75 + 30 * 600
    assert r.cost_nusd == first.cost_nusd + second.cost_nusd
    assert r.cost_estimated is True and r.cached_tokens == 50 and r.prompt_tokens == 200
