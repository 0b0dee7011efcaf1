"""Typed placeholders (``[EMAIL_1]``): the same value gets the same placeholder for the whole
request, input and output alike, so a conversation stays coherent for the model; the restorable
ones are put back into the answer for the caller only (``restore: true``)."""

from __future__ import annotations

import re

from sluice.guardrails.detector import merge
from sluice.guardrails.verdict import Finding

_PLACEHOLDER = re.compile(r"\[[A-Z][A-Z0-9_]{0,40}_\d{1,6}\]")


class Placeholders:
    """One request's placeholders. Holds the original values in memory only, for ``restore``."""

    __slots__ = ("_by_value", "_next", "restorable")

    def __init__(self) -> None:
        self._by_value: dict[tuple[str, str], str] = {}
        self._next: dict[str, int] = {}
        #: placeholder -> original, for the placeholders of guardrails with ``restore: true``.
        self.restorable: dict[str, str] = {}

    def placeholder(self, entity: str, value: str, *, restore: bool = False) -> str:
        key = (entity, value)
        ph = self._by_value.get(key)
        if ph is None:
            n = self._next.get(entity, 0) + 1
            self._next[entity] = n
            ph = self._by_value[key] = f"[{entity.upper()}_{n}]"
        if restore:
            self.restorable[ph] = value
        return ph

    def restore(self, text: str) -> str:
        if not self.restorable or "[" not in text:
            return text
        return _PLACEHOLDER.sub(lambda m: self.restorable.get(m.group(), m.group()), text)


def apply(text: str, findings: list[Finding], ph: Placeholders, *, restore: bool = False) -> str:
    """``text`` with each finding replaced by its placeholder (overlaps resolved, earliest first)."""
    if not findings:
        return text
    parts: list[str] = []
    pos = 0
    for f in merge(findings):
        parts.append(text[pos : f.start])
        parts.append(ph.placeholder(f.entity, text[f.start : f.end], restore=restore))
        pos = f.end
    parts.append(text[pos:])
    return "".join(parts)
