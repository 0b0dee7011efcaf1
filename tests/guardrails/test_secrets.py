from __future__ import annotations

import pytest

from sluice.guardrails.secrets import SecretsDetector, shannon_bits

DET = SecretsDetector()


def found(text: str, det: SecretsDetector = DET) -> list[tuple[str, str]]:
    return [(text[f.start : f.end], f.entity) for f in det.find(text)]


@pytest.mark.parametrize(
    ("value", "entity"),
    [
        ("sk-proj-abcdefghijklmnopqrstuvwxyz0123", "openai_key"),
        ("sk-abcdefghijklmnopqrstuvwxyzABCDEFGH0123", "openai_key"),
        ("sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345-AAAA", "anthropic_key"),
        ("AKIAIOSFODNN7EXAMPLE", "aws_access_key"),
        ("ASIAY34FZKBOKMUTVV7A", "aws_access_key"),
        ("ghp_abcdefghijklmnopqrstuvwxyz0123456789", "github_token"),
        ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", "github_token"),
        ("xoxb-1234567890-0987654321-abcdefghij", "slack_token"),
        ("sk_live_abcdefghijklmnop1234", "stripe_key"),
        ("AIzaSyA1234567890abcdefghijklmnopqrstuv", "google_api_key"),
        (
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "jwt",
        ),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----", "private_key"),
        ("Zx9Qm2LpR7tK4vW8yB3nC6dF1gH5jA0s", "high_entropy"),
    ],
)
def test_finds(value: str, entity: str) -> None:
    assert found(f"the value: {value} end") == [(value, entity)]


def test_aws_secret_key_next_to_its_name() -> None:
    text = "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    assert found(text) == [("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "aws_secret_key")]


@pytest.mark.parametrize(
    "text",
    [
        "We deploy on S3 and EKS with C4 nodes.",
        "commit 3f786850e387550fdab836ed7e6dc881de23001b",  # hex digests
        "sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "id 550e8400-e29b-41d4-a716-446655440000",
        "/usr/local/lib/python3.11/site-packages/sluice",
        "internationalization_and_localization_guidelines",
        "the task-sk-runner is not a key; nor is desk-organizer-for-small-apartments",
        "-----BEGIN PUBLIC KEY-----",
    ],
)
def test_not_secrets(text: str) -> None:
    assert found(text) == []


def test_a_private_key_block_without_its_end_runs_to_the_end_of_the_text() -> None:
    text = "key: -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEA and the rest"
    assert found(text) == [(text[5:], "private_key")]


def test_entropy_can_be_turned_off() -> None:
    assert found("Zx9Qm2LpR7tK4vW8yB3nC6dF1gH5jA0s", SecretsDetector(entropy=False)) == []


def test_shannon_bits() -> None:
    assert shannon_bits("aaaa") == 0 and round(shannon_bits("abcd"), 3) == 2.0


def test_hold_from_keeps_a_private_key_block_until_its_end() -> None:
    text = "here -----BEGIN RSA PRIVATE KEY-----\nMIIE"
    assert DET.hold_from(text) == len("here ")
    assert DET.hold_from(text + "\n-----END RSA PRIVATE KEY----- ok ") == len(
        text + "\n-----END RSA PRIVATE KEY----- ok "
    )
    assert DET.hold_from("token sk-proj-abc") == len("token ")
