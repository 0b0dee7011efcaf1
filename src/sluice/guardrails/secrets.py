"""Secrets: provider API keys by their published formats, private key blocks, JWTs, and long
random-looking tokens (Shannon entropy), all in memory.

Why our own patterns rather than a detector library: detect-secrets (Apache-2.0, the maintained
option) scans line by line through a process-wide plugin settings object, reports a secret's
value and line but not its offsets (which redaction and the streaming hold-back need), and runs
every plugin's filters per line — milliseconds for a 2 KB prompt against a budget of 100 µs for
PII and secrets together. The key formats below are the vendors' published prefixes; a prefilter
(one ``in`` test per prefix family) skips the regexes a text cannot match.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Final

from sluice.guardrails.detector import tail_run_start
from sluice.guardrails.verdict import Finding

#: (entity, prefilter substrings, pattern)
_KEYS: Final[tuple[tuple[str, tuple[str, ...], re.Pattern[str]], ...]] = (
    ("anthropic_key", ("sk-ant-",), re.compile(r"sk-ant-[A-Za-z0-9]{2,8}-[A-Za-z0-9_\-]{20,}")),
    ("openai_key", ("sk-",), re.compile(r"(?<![\w\-])sk-(?!ant-)(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_\-]{20,}")),
    # no prefilter: every prefix starts with "A", which the regex engine skips to at C speed
    ("aws_access_key", (),
     re.compile(r"(?:AKIA|ASIA|ABIA|ACCA|AROA|AIDA)(?<![A-Za-z0-9]....)[A-Z0-9]{16}(?![A-Za-z0-9])")),
    ("aws_secret_key", ("aws", "AWS"),
     re.compile(r"(?i:aws.{0,20}(?:secret|key).{0,20}?)[\"'=: ]+([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])")),
    ("github_token", ("gh",),
     re.compile(r"(?<![A-Za-z0-9])(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})")),
    ("slack_token", ("xox", "hooks.slack.com"),
     re.compile(r"(?<![A-Za-z0-9])xox[abposre]-[A-Za-z0-9\-]{10,}|https://hooks\.slack\.com/services/[A-Za-z0-9/_]{20,}")),
    ("stripe_key", ("_live_", "_test_"), re.compile(r"(?<![A-Za-z0-9])(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}")),
    ("google_api_key", ("AIza",), re.compile(r"(?<![A-Za-z0-9_\-])AIza[0-9A-Za-z_\-]{35}(?![0-9A-Za-z_\-])")),
    ("private_key", ("-----BEGIN",),
     re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----(?:.{0,16384}?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|.{0,16384})", re.S)),
    ("jwt", ("eyJ",), re.compile(r"(?<![A-Za-z0-9_\-])eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}")),
)  # fmt: skip

_TOKEN = re.compile(r"(?<![A-Za-z0-9+/=_\-])[A-Za-z0-9+/=_\-]{24,512}(?![A-Za-z0-9+/=_\-])")
#: Bits per character above which a long mixed token is taken for a secret (random base64 of 24+
#: characters scores ~4.3-5; English compounds, UUIDs, hex digests and paths score below).
ENTROPY_BITS: Final = 4.0
_PRIVATE_KEY_HEAD = "-----BEGIN"


def shannon_bits(s: str) -> float:
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


def _random_token(tok: str) -> bool:
    has_upper = has_lower = has_digit = False
    for c in tok:
        if c.isdigit():
            has_digit = True
        elif c.isupper():
            has_upper = True
        elif c.islower():
            has_lower = True
    return has_upper and has_lower and has_digit and shannon_bits(tok) >= ENTROPY_BITS


class SecretsDetector:
    __slots__ = ("_entropy",)

    def __init__(self, *, entropy: bool = True) -> None:
        self._entropy = entropy

    def find(self, text: str) -> list[Finding]:
        out: list[Finding] = []
        for entity, needles, pattern in _KEYS:
            for needle in needles:
                if needle in text:
                    break
            else:
                if needles:
                    continue
            for m in pattern.finditer(text):
                start, end = (m.start(1), m.end(1)) if pattern.groups else (m.start(), m.end())
                out.append(Finding(start, end, entity))
        if self._entropy and len(text) >= 24:
            self._random(text, out)
        return out

    @staticmethod
    def _random(text: str, out: list[Finding]) -> None:
        """Long random-looking tokens: only words of 24+ characters are looked at (rare in prose)."""
        words = text.split()
        if max(map(len, words), default=0) < 24:
            return
        taken = [(f.start, f.end) for f in out]
        pos = 0
        for word in words:
            if len(word) < 24:
                continue
            pos = text.find(word, pos)
            for m in _TOKEN.finditer(text, pos, pos + len(word)):
                s, e = m.start(), m.end()
                if not any(a < e and s < b for a, b in taken) and _random_token(m.group()):
                    out.append(Finding(s, e, "high_entropy"))
            pos += len(word)

    def hold_from(self, text: str) -> int:
        """A private key block is held from its BEGIN line until its END line (or the stream's end)."""
        head = text.rfind(_PRIVATE_KEY_HEAD)
        if head >= 0 and text.find("-----END", head) < 0:
            return head
        return tail_run_start(text)
