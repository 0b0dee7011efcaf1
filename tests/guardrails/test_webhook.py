from __future__ import annotations

import re

import msgspec
import pytest

from sluice.config.guardrails import WebhookGuardrail
from sluice.config.secret import Secret
from sluice.errors import ProviderError
from sluice.guardrails.webhook import WebhookCaller, WebhookFailed, parse_verdict

CFG = WebhookGuardrail(url="http://127.0.0.1:9/check", timeout_s=0.2, api_key=Secret("k-123", "env:K"))


def test_parse_verdict() -> None:
    assert parse_verdict(b'{"flagged": true, "categories": {"pii": true, "hate": false}}').categories == (
        "pii",
    )
    assert parse_verdict(b'{"flagged": false}').flagged is False
    for bad in (b"nope", b"[]", b'{"flagged": "yes"}'):
        with pytest.raises(WebhookFailed):
            parse_verdict(bad)


async def test_the_call_carries_texts_and_the_key() -> None:
    seen: list[tuple[str, dict[str, str], bytes]] = []

    async def post(
        name: str, url: str, headers: dict[str, str], body: bytes, timeout_s: float
    ) -> tuple[int, bytes]:
        seen.append((url, headers, body))
        return 200, b'{"flagged": true, "categories": ["prompt_injection"]}'

    verdict = await WebhookCaller(post).check("lakera", CFG, "input", ["hello"])
    assert verdict.flagged and verdict.categories == ("prompt_injection",)
    _url, headers, body = seen[0]
    assert headers["authorization"] == "Bearer k-123"
    assert msgspec.json.decode(body) == {"guardrail": "lakera", "direction": "input", "texts": ["hello"]}


@pytest.mark.parametrize(
    ("outcome", "message"),
    [
        (ProviderError("timeout", "slow", provider="guardrail:x"), "no answer within 0.2s"),
        (ProviderError("connection", "refused", provider="guardrail:x"), "call failed (connection)"),
        ((500, b"{}"), "answered HTTP 500"),
        (TimeoutError(), "no answer within 0.2s"),
    ],
)
async def test_failures(outcome: object, message: str) -> None:
    async def post(
        name: str, url: str, headers: dict[str, str], body: bytes, timeout_s: float
    ) -> tuple[int, bytes]:
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome  # type: ignore[return-value]

    with pytest.raises(WebhookFailed, match=re.escape(message)):
        await WebhookCaller(post).check("x", CFG, "input", ["t"])
