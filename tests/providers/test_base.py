"""retry-after from upstreams: finite, clamped, HTTP-dates honoured (issue #18, items 11 and 13)."""

from __future__ import annotations

import email.utils

import pytest

from sluice.providers.base import MAX_RETRY_AFTER_S, parse_retry_after

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": " 2.5 "}, 2.5),
        ({"retry-after": "-4"}, 0.0),
        ({"retry-after": "inf"}, MAX_RETRY_AFTER_S),
        ({"retry-after": "1e400"}, MAX_RETRY_AFTER_S),
        ({"retry-after": "-inf"}, 0.0),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "9" * 400}, None),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "inf", "retry-after": "2"}, MAX_RETRY_AFTER_S),
        ({"retry-after-ms": "nan", "retry-after": "2"}, 2.0),
        ({"retry-after": email.utils.formatdate(NOW + 30, usegmt=True)}, 30.0),
        ({"retry-after": email.utils.formatdate(NOW - 30, usegmt=True)}, 0.0),
        ({"retry-after": "Fri, 31 Dec 9999 23:59:59 GMT"}, MAX_RETRY_AFTER_S),
        ({"retry-after": "Mon, 99 Foo 2026 99:99:99 GMT"}, None),
        ({}, None),
    ],
)
def test_retry_after_is_always_none_or_a_finite_bounded_wait(
    headers: dict[str, str], wait: float | None
) -> None:
    assert parse_retry_after(headers, now=NOW) == wait
