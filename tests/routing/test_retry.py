"""Backoff delays and the retry budget."""

from __future__ import annotations

from sluice.config.routing import BackoffConfig, RetryBudgetConfig
from sluice.routing.retry import RetryBudget, backoff_s


def test_backoff_grows_exponentially_capped_with_jitter() -> None:
    cfg = BackoffConfig(base_s=0.5, max_s=3, multiplier=2, jitter=0.5)
    assert [backoff_s(cfg, n, lambda: 1.0) for n in range(5)] == [0.0, 0.5, 1.0, 2.0, 3.0]
    assert [backoff_s(cfg, n, lambda: 0.0) for n in range(1, 4)] == [0.25, 0.5, 1.0]
    no_jitter = BackoffConfig(base_s=1, jitter=0)
    assert backoff_s(no_jitter, 2, lambda: 0.3) == 2.0


def test_budget_allows_a_share_of_requests_in_flight() -> None:
    budget = RetryBudget(RetryBudgetConfig(ratio=0.2, min_in_flight=1))
    for _ in range(10):
        budget.enter()
    assert budget.try_acquire() and budget.try_acquire()
    assert not budget.try_acquire(), "2 extra attempts = 20% of 10"
    budget.release()
    assert budget.try_acquire()
    for _ in range(10):
        budget.leave()
    budget.release()
    budget.release()
    assert budget.try_acquire(), "min_in_flight always allowed"
    assert not budget.try_acquire()
    assert budget.view()["denied"] == 2


def test_zero_budget_allows_nothing() -> None:
    budget = RetryBudget(RetryBudgetConfig(ratio=0, min_in_flight=0))
    budget.enter()
    assert not budget.try_acquire()
