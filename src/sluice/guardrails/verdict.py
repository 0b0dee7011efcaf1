"""What a detector finds, and what a guardrail decided: the record keeps verdicts, never the text."""

from __future__ import annotations

from typing import NamedTuple

import msgspec


class Finding(NamedTuple):
    """A match in one text: ``text[start:end]`` is an ``entity`` (``email``, ``openai_key`` ...)."""

    start: int
    end: int
    entity: str


class Verdict(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One guardrail's outcome on one direction of one request, as the request record lists it.

    ``outcome``: ``blocked`` | ``redacted`` | ``flagged`` (action log) | ``error`` (failed; the
    request went on because of ``on_error: allow``) | ``unavailable`` (failed, request refused).
    ``counts`` are by entity type; the matched text is never kept."""

    guardrail: str
    type: str
    direction: str
    action: str
    outcome: str
    counts: dict[str, int] = msgspec.field(default_factory=dict)
    score: float | None = None
    detail: str | None = None


def count(findings: list[Finding], into: dict[str, int]) -> dict[str, int]:
    for f in findings:
        into[f.entity] = into.get(f.entity, 0) + 1
    return into


def describe(counts: dict[str, int]) -> str:
    """``email x2, ssn x1``: what was found, for an error message (never the values)."""
    return ", ".join(f"{k} x{v}" for k, v in sorted(counts.items()))
