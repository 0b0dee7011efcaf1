from __future__ import annotations

import pytest

from sluice.guardrails.pii import PiiDetector, iban_ok, luhn_ok

ALL = PiiDetector(["email", "phone", "credit_card", "iban", "ssn", "ip"])


def found(text: str, det: PiiDetector = ALL) -> list[tuple[str, str]]:
    return [(text[f.start : f.end], f.entity) for f in det.find(text)]


@pytest.mark.parametrize(
    ("text", "value", "entity"),
    [
        ("write to bob.smith+news@mail.example.co.uk today", "bob.smith+news@mail.example.co.uk", "email"),
        ("SSN 123-45-6789.", "123-45-6789", "ssn"),
        ("ssn 123 45 6789", "123 45 6789", "ssn"),
        ("visa 4111 1111 1111 1111 exp 12/29", "4111 1111 1111 1111", "credit_card"),
        ("amex 378282246310005", "378282246310005", "credit_card"),
        ("mc 5555-5555-5555-4444", "5555-5555-5555-4444", "credit_card"),
        ("call +1 415 555 0100", "+1 415 555 0100", "phone"),
        ("call (415) 555-0100 now", "(415) 555-0100", "phone"),
        ("call 415-555-0100", "415-555-0100", "phone"),
        ("UK +44 20 7946 0958", "+44 20 7946 0958", "phone"),
        ("host 192.168.1.10 is down", "192.168.1.10", "ip"),
        ("v6 2001:db8::8a2e:370:7334 up", "2001:db8::8a2e:370:7334", "ip"),
        ("IBAN DE89 3704 0044 0532 0130 00 thanks", "DE89 3704 0044 0532 0130 00", "iban"),
        ("GB82WEST12345698765432", "GB82WEST12345698765432", "iban"),
        ("to MT84MALT011000012345MTLCAST001S.", "MT84MALT011000012345MTLCAST001S", "iban"),
        ("pay FR76 3000 6000 0112 3456 7890 189 now", "FR76 3000 6000 0112 3456 7890 189", "iban"),
    ],
)
def test_finds(text: str, value: str, entity: str) -> None:
    assert (value, entity) in found(text)


@pytest.mark.parametrize(
    "text",
    [
        "We run it on S3, with C4 instances and EKS.",  # reported: product names flagged as PII
        "Order 4111111111111111 shipped",  # Luhn-valid by chance, but an order number
        "invoice no. 4532015112830366 is due",
        "tracking #4916338506082832",
        "order number 1234567812345670",  # Luhn-valid, no card issuer prefix
        "upgrade to version 1.2.3.4 tonight",  # version strings that look like IPs
        "running v10.0.0.1 in prod",
        "Chrome 120.0.6099.109",
        "build 2.10.3.4.5",
        "999.1.1.1 is not an address",
        "on 2024-01-15 at 12:30:45",
        "ticket 20240115 and 4155550100",  # plain digit runs are not phone numbers
        "ssn 000-12-3456 and 666-12-3456 and 900-12-3456 are invalid",
        "DE00 3704 0044 0532 0130 00",  # wrong checksum
        "an @ sign alone, user@localhost",
        "the ratio is 3:2:1 and time 10:30:00",
    ],
)
def test_reported_false_positives_are_not_flagged(text: str) -> None:
    assert found(text) == []


def test_a_card_after_card_words_is_flagged_even_after_order() -> None:
    assert found("order paid with card 4111 1111 1111 1111") == [("4111 1111 1111 1111", "credit_card")]


def test_entities_chosen_and_named_patterns() -> None:
    det = PiiDetector(["email"], {"employee_id": r"EMP-\d{6}"})
    assert found("bob@example.com EMP-123456 123-45-6789", det) == [
        ("bob@example.com", "email"),
        ("EMP-123456", "employee_id"),
    ]


def test_checksums() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("DE", "89", "370400440532013000") and not iban_ok("DE", "88", "370400440532013000")


def test_hold_from_keeps_a_partial_entity() -> None:
    assert ALL.hold_from("my ssn is 123-45-") == len("my ssn is ")
    assert ALL.hold_from("mail bob@exa") == len("mail ")
    assert ALL.hold_from("card 4111 1111 ") == len("card ")
    assert ALL.hold_from("done. ") == len("done. ")
