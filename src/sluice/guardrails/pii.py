"""PII: email, phone, credit card (Luhn), IBAN (mod 97), US SSN, IP address, and named user patterns.

Each entity is a candidate regex plus a validator, because regexes alone flag what users report as
false positives: order numbers that pass Luhn by chance (a card needs a real issuer prefix and
length, and is not read as one after "order"/"invoice"/"tracking"), version strings that look like
IPv4 addresses (not after "version"/"v"/"build", not with a fifth dotted part), dates and plain
digit runs as phone numbers (a phone needs a leading ``+`` or the (NNN) NNN-NNNN shape), and short
product names ("S3", "C4", "EKS": nothing here matches them). Cheap checks (``"@" in text``, any
digit) skip the regexes that cannot match, which keeps a 2 KB prompt in the tens of microseconds.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from typing import Final

from sluice.guardrails.detector import tail_run_start
from sluice.guardrails.verdict import Finding

_SSN = re.compile(r"(?<![\w\-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\w\-])")
_CARD = re.compile(r"(?<![\w\-.])\d(?:[ \-]?\d){12,18}(?![\w\-])")
_PHONE = re.compile(
    r"(?<![\w+\-.])(?:\+\d{1,3}[ \-.]?(?:\(\d{1,4}\)[ \-.]?)?\d{1,4}(?:[ \-.]?\d{2,5}){1,4}"
    r"|\(\d{3}\)[ \-.]?\d{3}[ \-.]\d{4}|\d{3}[\-.]\d{3}[\-.]\d{4})(?![\w\-])"
)
_IPV4 = re.compile(r"(?<![\w.\-])(?:\d{1,3}\.){3}\d{1,3}(?![\w\-]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_V6_HINT = re.compile(r":[0-9A-Fa-f]{0,4}:")
_IBAN = re.compile(r"(?<![A-Za-z0-9])([A-Z]{2})(\d{2})((?: ?[A-Z0-9]){11,30})(?![A-Za-z0-9])")
_HAS_DIGIT = re.compile(r"\d")
#: Candidate spans for the digit entities: a digit, "+" or "(" and then 6+ digits or separators.
#: Starting with a character class (no look-behind) lets the regex engine skip to the next digit
#: at C speed; each specific pattern then runs only inside a candidate's window.
_CLUSTER = re.compile(r"[0-9+(][0-9 ()+.\-/]{6,}")
#: An IBAN's country code and check digits, then only BBAN characters up to the candidate.
_IBAN_HEAD = re.compile(r"[A-Z]{2}\d{2}[A-Z0-9 ]{0,30}\Z")
_SEPARATORS = str.maketrans("", "", " ()+.-/")
_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62}\.)+[A-Za-z]{2,24}(?![\w\-])")
_LOCAL = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")

#: Text just before a number that says it is not a card / an IP.
_NOT_CARD = re.compile(
    r"(?i)(?:order|invoice|tracking|ticket|ref(?:erence)?|po|confirmation|shipment|account)\W{0,3}(?:n(?:o|um(?:ber)?)\W{0,2}|id\W{0,2}|#\W{0,1})?$"
)
_CARD_WORDS = re.compile(r"(?i)(?:card|visa|mastercard|amex|credit|debit|cc)\W{0,20}$")
_NOT_IP = re.compile(
    r"(?i)(?:\bv|version|ver|release|build|firmware|update|upgrade|chrome|python|node|sdk)\W{0,3}$"
)

#: IBAN length per country (ISO 13616), for the countries most often seen; others: 15-34.
_IBAN_LENGTHS: Final = {
    "AD": 24, "AE": 23, "AT": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "CH": 21, "CY": 28, "CZ": 24,
    "DE": 22, "DK": 18, "EE": 20, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GR": 27, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IS": 26, "IT": 27, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31,
    "NL": 18, "NO": 15, "PL": 28, "PT": 25, "RO": 24, "SA": 24, "SE": 24, "SI": 19, "SK": 24, "TR": 26,
}  # fmt: skip


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_issuer_ok(d: str) -> bool:
    n = len(d)
    if d[0] == "4":
        return n in (13, 16, 19)
    two, four = int(d[:2]), int(d[:4])
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return n == 16
    if two in (34, 37):
        return n == 15
    if d.startswith(("6011", "65")) or 644 <= int(d[:3]) <= 649:
        return 16 <= n <= 19
    if 3528 <= four <= 3589:
        return 16 <= n <= 19
    if two in (36, 38) or 300 <= int(d[:3]) <= 305:
        return n == 14
    return False


def iban_ok(country: str, check: str, rest: str) -> bool:
    bban = rest.replace(" ", "")
    expected = _IBAN_LENGTHS.get(country)
    length = 4 + len(bban)
    if (expected is not None and length != expected) or not 15 <= length <= 34:
        return False
    moved = bban + country + check
    number = "".join(str(int(c, 36)) for c in moved)
    return int(number) % 97 == 1


def _ssn_ok(area: str, group: str, serial: str) -> bool:
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _before(text: str, start: int, n: int = 32) -> str:
    return text[max(0, start - n) : start]


def _emails(text: str) -> Iterable[Finding]:
    """From each "@": the local part backwards (up to 64 characters), the domain forwards."""
    at = text.find("@")
    while at >= 0:
        start = at
        lo = max(0, at - 64)
        while start > lo and text[start - 1] in _LOCAL:
            start -= 1
        while start < at and not text[start].isalnum():  # a local part starts with a letter or digit
            start += 1
        dom = _DOMAIN.match(text, at + 1)
        if start < at and dom is not None and (start == 0 or text[start - 1] not in _LOCAL):
            yield Finding(start, dom.end(), "email")
        at = text.find("@", at + 1)


def _ssns(text: str, lo: int = 0, hi: int | None = None) -> Iterable[Finding]:
    for m in _SSN.finditer(text, lo, len(text) if hi is None else hi):
        if _ssn_ok(m.group(1), m.group(3), m.group(4)):
            yield Finding(m.start(), m.end(), "ssn")


def _cards(text: str, lo: int = 0, hi: int | None = None) -> Iterable[Finding]:
    for m in _CARD.finditer(text, lo, len(text) if hi is None else hi):
        digits = m.group().replace(" ", "").replace("-", "")
        if not (_card_issuer_ok(digits) and luhn_ok(digits)):
            continue
        before = _before(text, m.start())
        if _NOT_CARD.search(before) and not _CARD_WORDS.search(before):
            continue
        yield Finding(m.start(), m.end(), "credit_card")


def _phones(text: str, lo: int = 0, hi: int | None = None) -> Iterable[Finding]:
    for m in _PHONE.finditer(text, lo, len(text) if hi is None else hi):
        digits = sum(c.isdigit() for c in m.group())
        if 8 <= digits <= 15:
            yield Finding(m.start(), m.end(), "phone")


def _ipv4s(text: str, lo: int = 0, hi: int | None = None) -> Iterable[Finding]:
    for m in _IPV4.finditer(text, lo, len(text) if hi is None else hi):
        parts = m.group().split(".")
        valid = all(int(p) <= 255 and (p == "0" or p[0] != "0") for p in parts)
        if valid and not _NOT_IP.search(_before(text, m.start(), 16)):
            yield Finding(m.start(), m.end(), "ip")


def _ipv6s(text: str) -> Iterable[Finding]:
    """Around each ``:hex:`` (literal-first, so prose colons cost nothing), the full pattern."""
    end = -1
    for c in _V6_HINT.finditer(text):
        if c.start() < end:
            continue
        for m in _IPV6.finditer(text, max(0, c.start() - 40, end), min(len(text), c.end() + 40)):
            if m.group().count(":") >= 2 and _is_ipv6(m.group()) and m.start() >= end:
                yield Finding(m.start(), m.end(), "ip")
                end = m.end()


def _is_ipv6(s: str) -> bool:
    try:
        ipaddress.IPv6Address(s)
    except ValueError:
        return False
    return s != "::"


def _ibans(text: str, lo: int = 0, hi: int | None = None) -> Iterable[Finding]:
    for m in _IBAN.finditer(text, lo, len(text) if hi is None else hi):
        if iban_ok(m.group(1), m.group(2), m.group(3)):
            yield Finding(m.start(), m.end(), "iban")


Window = Callable[[str, int, int | None], Iterable[Finding]]
#: Digit entities, each searched only inside the candidate windows of ``_CLUSTER``.
_DIGIT_FINDERS: Final[dict[str, Window]] = {
    "ssn": _ssns, "credit_card": _cards, "phone": _phones, "ip": _ipv4s, "iban": _ibans,
}  # fmt: skip
_ENTITY_ORDER: Final = ("email", "ssn", "credit_card", "phone", "ip", "iban")


class PiiDetector:
    """The built-in entities chosen, then the named user patterns."""

    __slots__ = ("_digit", "_email", "_iban", "_ipv6", "_patterns", "patterns")

    def __init__(self, entities: Iterable[str], patterns: dict[str, str] | None = None) -> None:
        chosen = set(entities)
        self._email = "email" in chosen
        self._ipv6 = "ip" in chosen
        self._iban = "iban" in chosen
        # a fixed order: cards before phones, so an overlap is read as the card
        self._digit = [
            _DIGIT_FINDERS[e] for e in _ENTITY_ORDER if e in chosen and e in _DIGIT_FINDERS and e != "iban"
        ]
        self.patterns = dict(patterns or {})
        self._patterns = [(name, re.compile(p)) for name, p in self.patterns.items()]

    def find(self, text: str) -> list[Finding]:
        out: list[Finding] = []
        if self._email and "@" in text:
            out.extend(_emails(text))
        if (self._digit or self._iban) and _HAS_DIGIT.search(text):
            self._digits(text, out)
        for name, pattern in self._patterns:
            out.extend(
                Finding(m.start(), m.end(), name) for m in pattern.finditer(text) if m.end() > m.start()
            )
        return out

    def _digits(self, text: str, out: list[Finding]) -> None:
        n = len(text)
        iban_end = -1
        for m in _CLUSTER.finditer(text):
            s, e = m.span()
            frag = m.group()
            digits = len(frag.translate(_SEPARATORS))
            hi = min(n, e + 1)  # one character more, for the patterns' look-ahead
            # Every digit entity has 9+ digits, or a "+" (phones), or three dots (IPv4): dates,
            # versions and amounts are skipped without running the patterns.
            if digits >= 9 or "+" in frag or frag.count(".") >= 3:
                for finder in self._digit:
                    out.extend(finder(text, s, hi))
            lo = max(0, s - 34, iban_end)
            if self._iban and digits >= 6 and _IBAN_HEAD.search(text, lo, min(n, s + 2)):
                for f in _ibans(text, lo, min(n, e + 40)):  # a BBAN may go on with letters
                    out.append(f)
                    iban_end = f.end
        if self._ipv6:
            out.extend(_ipv6s(text))

    def hold_from(self, text: str) -> int:
        return tail_run_start(text)
