"""The protocol every text detector keeps, and the helpers the streaming scanner shares."""

from __future__ import annotations

from typing import Protocol

from sluice.guardrails.verdict import Finding


class Detector(Protocol):
    """Finds entities in a text. Pure and thread-safe; built once per policy.

    ``find`` returns non-overlapping findings in text order. ``max_len`` bounds a match's length
    (the streaming scanner never holds more than that back for this detector, except where
    ``hold_from`` says so)."""

    def find(self, text: str) -> list[Finding]: ...

    def hold_from(self, text: str) -> int:
        """Streams: the index from which ``text``'s tail could still become (part of) a match once
        more text arrives; ``len(text)`` when nothing needs holding."""
        ...


class FindingsCache:
    """Findings of whole texts seen recently (system prompts and chat histories are sent again with
    every turn). Memory only; bounded by entries (cleared when full) and by which texts are kept:
    only those of ``min_len`` to ``max_len`` characters. Stream windows never go through it."""

    __slots__ = ("_chars", "_detector", "_entries", "_max_chars", "_max_entries", "_max_len", "_min_len")

    def __init__(
        self, detector: Detector, *, max_entries: int = 2048, max_chars: int = 4_000_000, min_len: int = 200,
        max_len: int = 65536,
    ) -> None:  # fmt: skip
        self._detector = detector
        self._entries: dict[str, tuple[Finding, ...]] = {}
        self._chars = 0
        self._max_entries = max_entries
        self._max_chars = max_chars
        self._min_len = min_len
        self._max_len = max_len

    def find(self, text: str) -> list[Finding]:
        if not self._min_len <= len(text) <= self._max_len:
            return self._detector.find(text)
        hit = self._entries.get(text)
        if hit is None:
            if len(self._entries) >= self._max_entries or self._chars + len(text) > self._max_chars:
                self._entries.clear()
                self._chars = 0
            hit = self._entries[text] = tuple(self._detector.find(text))
            self._chars += len(text)
        return list(hit)

    def hold_from(self, text: str) -> int:
        return self._detector.hold_from(text)


#: Characters that can be part of an entity's run (emails, keys, numbers, IPs, IBANs, placeholders).
_RUN = frozenset("@._%+-:/=()[]#~*") | frozenset("0123456789")
#: The longest run the scanner holds back; longer random runs are caught by the entropy check.
MAX_RUN = 256


def tail_run_start(text: str, limit: int = MAX_RUN) -> int:
    """The start of ``text``'s trailing run of entity characters (letters, digits, ``@._%+-:/=()[]``,
    and single spaces between digit groups, as in ``4111 1111`` or ``(415) 555``)."""
    i = len(text)
    lo = max(0, i - limit)
    while i > lo:
        c = text[i - 1]
        grouped = c == " " and i - 2 >= lo and (text[i - 2].isdigit() or text[i - 2] == ")")
        if not (grouped or c in _RUN or c.isalnum()):
            break
        i -= 1
    return i


def merge(findings: list[Finding]) -> list[Finding]:
    """Sorted, with overlaps resolved: the earliest (then longest) finding wins."""
    findings.sort(key=lambda f: (f.start, -f.end))
    out: list[Finding] = []
    end = -1
    for f in findings:
        if f.start >= end:
            out.append(f)
            end = f.end
    return out
