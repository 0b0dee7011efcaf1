"""Output guardrails on a whole (non-streamed) answer: content, refusal and tool-call arguments."""

from __future__ import annotations

import logging

from sluice.guardrails.engine import Guard, RequestState
from sluice.guardrails.output_schema import InvalidSchema, SchemaChecker, requested_schema
from sluice.guardrails.redact import apply
from sluice.guardrails.texts import Slot, get, put, response_slots
from sluice.guardrails.verdict import count
from sluice.schema.chat import ChatRequest, ChatResponse

log = logging.getLogger("sluice.guardrails")


def check_answer(state: RequestState, resp: ChatResponse) -> None:
    """Raises GuardrailBlocked (502) or GuardrailUnavailable (503); redacts in place."""
    slots = response_slots(resp)
    for guard in state.plan.output_text:
        check_texts(guard, state, slots)


def check_texts(guard: Guard, state: RequestState, slots: list[Slot]) -> None:
    detector = guard.cached
    assert detector is not None
    counts: dict[str, int] = {}
    redact = guard.action == "redact"
    try:
        for slot in slots:
            text = get(slot)
            findings = detector.find(text)
            if findings:
                count(findings, counts)
                if redact:
                    put(slot, apply(text, findings, state.placeholders))
    except Exception as exc:
        log.warning("guardrail %s failed: %s", guard.name, type(exc).__name__)
        err = state.failed(guard, "output", type(exc).__name__)
        if err is not None:
            raise err from None
        return
    if not counts:
        return
    if guard.action == "block":
        raise state.blocked(guard, "output", counts)
    state.record(guard.verdict("output", "redacted" if redact else "flagged", counts=counts))


def restore_answer(state: RequestState, resp: ChatResponse) -> None:
    """Put the restorable input placeholders back, for the caller only."""
    if state.placeholders.restorable:
        for slot in response_slots(resp):
            put(slot, state.placeholders.restore(get(slot)))


def schema_problem(checker: SchemaChecker, chat: ChatRequest, answer: str) -> str | None:
    """What is wrong with ``answer`` against the request's json_schema (None: valid or no schema)."""
    schema = requested_schema(chat)
    if schema is None:
        return None
    try:
        return checker.problem(schema, answer)
    except InvalidSchema as exc:
        return str(exc)


def answer_text(resp: ChatResponse) -> str:
    return resp.choices[0].message.content or "" if resp.choices else ""
