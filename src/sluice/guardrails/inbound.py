"""Input guardrails: every text of the request, before the cache and before any upstream call.

Blocking and logging guardrails see the text as the caller sent it; redacting ones run last and
rewrite the request in place, so the provider (and the cache key) only ever see placeholders.
"""

from __future__ import annotations

import asyncio
import logging

from sluice.guardrails.engine import Guard, RequestState
from sluice.guardrails.redact import apply
from sluice.guardrails.texts import Slot, get, put
from sluice.guardrails.verdict import count
from sluice.guardrails.webhook import WebhookCaller, WebhookFailed

log = logging.getLogger("sluice.guardrails")

Texts = list[tuple[str, Slot]]


#: Requests with more text than this are scanned in a worker thread: at ~15 µs per KB per detector
#: that is past a millisecond, which must not be spent on the event loop.
OFFLOAD_CHARS = 32 * 1024


async def check_input(state: RequestState, texts: Texts, webhooks: WebhookCaller | None) -> None:
    """Raises GuardrailBlocked (400) or GuardrailUnavailable (503); else the texts are clean."""
    big = sum(len(get(slot)) for _, slot in texts) > OFFLOAD_CHARS
    loop = asyncio.get_running_loop()
    for guard in state.plan.input:
        if guard.detector is not None:
            if big:  # the request waits; nothing else touches its texts meanwhile
                await loop.run_in_executor(None, _entities, guard, state, texts)
            else:
                _entities(guard, state, texts)
        elif guard.scorer is not None:
            _injection(guard, state, texts)
        elif guard.webhook is not None and webhooks is not None:
            await _webhook(guard, state, texts, webhooks)


def _entities(guard: Guard, state: RequestState, texts: Texts) -> None:
    detector = guard.cached
    assert detector is not None
    counts: dict[str, int] = {}
    redact = guard.action == "redact"
    try:
        for _, slot in texts:
            text = get(slot)
            findings = detector.find(text)
            if findings:
                count(findings, counts)
                if redact:
                    put(slot, apply(text, findings, state.placeholders, restore=guard.restore))
    except Exception as exc:  # a detector must never fail open
        _failed(guard, state, exc)
        return
    if not counts:
        return
    if guard.action == "block":
        raise state.blocked(guard, "input", counts)
    state.record(guard.verdict("input", "redacted" if redact else "flagged", counts=counts))


def _injection(guard: Guard, state: RequestState, texts: Texts) -> None:
    scorer = guard.scorer
    assert scorer is not None
    try:
        scores = [scorer.score(get(slot), role) for role, slot in texts]
    except Exception as exc:
        _failed(guard, state, exc)
        return
    hits = [s for s in scores if s >= guard.threshold]
    if not hits:
        return
    counts = {"injection": len(hits)}
    top = round(max(hits), 3)
    if guard.action == "block":
        raise state.blocked(guard, "input", counts, f"prompt injection (score {top} >= {guard.threshold})")
    state.record(guard.verdict("input", "flagged", counts=counts, score=top))


async def _webhook(guard: Guard, state: RequestState, texts: Texts, webhooks: WebhookCaller) -> None:
    assert guard.webhook is not None
    try:
        verdict = await webhooks.check(guard.name, guard.webhook, "input", [get(s) for _, s in texts])
    except WebhookFailed as exc:
        _failed(guard, state, exc)
        return
    if not verdict.flagged:
        return
    counts = {c: 1 for c in verdict.categories} or {"flagged": 1}
    if guard.action == "block":
        raise state.blocked(guard, "input", counts, "flagged by the guardrail service")
    state.record(guard.verdict("input", "flagged", counts=counts))


def _failed(guard: Guard, state: RequestState, exc: Exception) -> None:
    reason = type(exc).__name__ if not isinstance(exc, WebhookFailed) else str(exc)
    log.warning("guardrail %s failed: %s", guard.name, reason)
    err = state.failed(guard, "input", reason)
    if err is not None:
        raise err
