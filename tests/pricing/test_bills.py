"""Providers' usage exports read as bill lines: OpenAI usage and costs, Anthropic's report, CSV."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from sluice.pricing.bills import BillFormatError, BillLine, read_bill

OPENAI_USAGE = {
    "object": "page", "has_more": False, "next_page": None,
    "data": [{"object": "bucket", "start_time": 1767225600, "end_time": 1767312000, "results": [
        {"object": "organization.usage.completions.result", "input_tokens": 1000, "output_tokens": 500,
         "input_cached_tokens": 800, "num_model_requests": 5, "project_id": None, "user_id": None,
         "api_key_id": None, "model": "gpt-4o-mini-2024-07-18", "batch": None}]}],
}  # fmt: skip
OPENAI_COSTS = {
    "object": "page",
    "data": [{"object": "bucket", "start_time": 1767225600, "end_time": 1767312000, "results": [
        {"object": "organization.costs.result", "amount": {"value": 0.06, "currency": "usd"},
         "line_item": "gpt-4o-mini-2024-07-18, input", "project_id": "proj_1"},
        {"object": "organization.costs.result", "amount": {"value": 0.0125, "currency": "usd"},
         "line_item": "gpt-4o-mini-2024-07-18, output", "project_id": "proj_1"}]}],
}  # fmt: skip
ANTHROPIC_REPORT = {
    "data": [{"starting_at": "2026-01-01T00:00:00Z", "ending_at": "2026-01-02T00:00:00Z", "results": [
        {"uncached_input_tokens": 100, "cache_read_input_tokens": 40,
         "cache_creation": {"ephemeral_5m_input_tokens": 10, "ephemeral_1h_input_tokens": 5},
         "output_tokens": 30, "server_tool_use": {"web_search_requests": 0}, "api_key_id": None,
         "workspace_id": None, "model": "claude-sonnet-4-5-20250929", "service_tier": "standard",
         "context_window": "0-200k"}]}],
    "has_more": False, "next_page": None,
}  # fmt: skip


def test_openai_usage_export() -> None:
    assert read_bill(json.dumps(OPENAI_USAGE)) == [
        BillLine(
            "2026-01-01",
            "gpt-4o-mini-2024-07-18",
            requests=5,
            input_tokens=1000,
            output_tokens=500,
            cached_tokens=800,
        )
    ]


def test_openai_costs_export_and_a_list_of_pages() -> None:
    lines = read_bill(json.dumps([OPENAI_COSTS, OPENAI_COSTS]))
    assert len(lines) == 4 and {line.model for line in lines} == {"gpt-4o-mini-2024-07-18"}
    assert sum(line.cost_usd or 0 for line in lines) == Decimal("0.145")


def test_anthropic_usage_report_counts_every_input_class() -> None:
    (line,) = read_bill(json.dumps(ANTHROPIC_REPORT))
    assert (line.day, line.model, line.input_tokens, line.cached_tokens, line.output_tokens) == (
        "2026-01-01", "claude-sonnet-4-5-20250929", 155, 40, 30,
    )  # fmt: skip


def test_csv_with_request_ids_and_aliases() -> None:
    text = "Request_ID,date,model,prompt_tokens,completion_tokens,cost\nreq-1,2026-01-01,m,10,5,0.000123\nreq-2,,m,,,\n"
    one, two = read_bill(text)
    assert one == BillLine("2026-01-01", "m", "req-1", 1, 10, 5, 0, Decimal("0.000123"))
    assert two.request_id == "req-2" and two.cost_usd is None and two.input_tokens == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("{nope", "not valid JSON"),
        ('{"object": "list"}', "expected a page of buckets"),
        ('{"data": [{"results": [{"object": "organization.usage.images.result"}]}]}', "unknown result"),
        ("model,tokens\nm,1\n", "request_id"),
        ("request_id,input_tokens\nr,lots\n", "line 2"),
    ],
)
def test_unreadable_exports_say_why(text: str, message: str) -> None:
    with pytest.raises(BillFormatError, match=message):
        read_bill(text)
