from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from sluice.config.limits import BudgetConfig, LimitsConfig, RateLimitConfig


def test_example_shapes():
    limits = msgspec.convert(
        {"providers": {"openai": {"tpm": 2000000}, "anthropic": {"rpm": 4000}}, "timezone": "Europe/Paris"},
        LimitsConfig,
    )
    assert limits.providers["openai"] == RateLimitConfig(tpm=2_000_000)
    budget = msgspec.convert({"usd": 500.1, "period": "monthly", "alert_at": [0.8, 1.0]}, BudgetConfig)
    assert budget.usd == Decimal("500.1") and budget.alert_at == [0.8, 1.0]


@pytest.mark.parametrize(
    ("data", "typ", "message"),
    [
        ({"timezone": "Mars/Base"}, LimitsConfig, "unknown timezone"),
        ({"providers": {"x": {"rpm": 0}}}, LimitsConfig, "$.providers[...].rpm"),
        ({"provider": {}}, LimitsConfig, "unknown field `provider`"),
        ({"usd": -1}, BudgetConfig, "non-negative"),
        ({"usd": 5, "period": "hourly"}, BudgetConfig, "$.period"),
    ],
)
def test_rejected(data, typ, message):
    with pytest.raises(msgspec.ValidationError) as err:
        msgspec.convert(data, typ)
    assert message in str(err.value)
