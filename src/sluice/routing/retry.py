"""Backoff delays and the retry budget.

The budget keeps an outage from turning into a retry storm: extra attempts (retries *and*
fallbacks) in flight may be at most ``ratio`` of the requests being routed, with ``min_in_flight``
always allowed. When the budget is spent, a request returns its last error instead of trying again.
"""

from __future__ import annotations

from collections.abc import Callable

from sluice.config.routing import BackoffConfig, RetryBudgetConfig


def backoff_s(cfg: BackoffConfig, round_no: int, rand: Callable[[], float]) -> float:
    """Delay before retry round ``round_no`` (1-based): exponential, capped, with jitter."""
    if round_no < 1:
        return 0.0
    ceiling = min(cfg.max_s, cfg.base_s * cfg.multiplier ** (round_no - 1))
    return ceiling * (1.0 - cfg.jitter) + ceiling * cfg.jitter * rand()


class RetryBudget:
    __slots__ = ("_min", "_ratio", "denied", "extra", "requests")

    def __init__(self, cfg: RetryBudgetConfig) -> None:
        self._ratio = cfg.ratio
        self._min = cfg.min_in_flight
        #: Requests being routed (from entering the router until an answer is committed or failed).
        self.requests = 0
        #: Extra attempts in flight.
        self.extra = 0
        self.denied = 0

    def enter(self) -> None:
        self.requests += 1

    def leave(self) -> None:
        self.requests -= 1

    def try_acquire(self) -> bool:
        if self.extra < max(self._min, self._ratio * self.requests):
            self.extra += 1
            return True
        self.denied += 1
        return False

    def release(self) -> None:
        self.extra -= 1

    def view(self) -> dict[str, object]:
        return {
            "requests_routing": self.requests,
            "extra_attempts_in_flight": self.extra,
            "ratio": self._ratio,
            "min_in_flight": self._min,
            "denied": self.denied,
        }
