"""Circuit breakers with an injected clock; moving averages."""

from __future__ import annotations

from sluice.config.routing import BreakerConfig
from sluice.providers.base import Target
from sluice.routing.health import Breaker, HealthBoard


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_then_one_probe_decides() -> None:
    clock = Clock()
    b = Breaker(BreakerConfig(failures=3, error_ratio=None, cooldown_s=10), clock)
    for _ in range(2):
        assert b.admit() == "pass"
        b.failure("pass", "server")
    b.success("pass")  # resets the streak
    for _ in range(3):
        b.failure(b.admit(), "server")
    assert b.state == "open" and b.admit() is None and b.retry_in() == 10
    clock.now += 9.9
    assert b.admit() is None
    clock.now += 0.2
    assert b.admit() == "probe"
    assert b.state == "half_open" and b.admit() is None, "only one probe at a time"
    b.failure("probe", "timeout")
    assert b.state == "open" and b.opened == 2 and b.last_error == "timeout"
    clock.now += 10
    probe = b.admit()
    assert probe == "probe"
    b.success(probe)
    assert b.state == "closed" and b.admit() == "pass"


def test_abandoned_probe_frees_the_slot() -> None:
    clock = Clock()
    b = Breaker(BreakerConfig(failures=1, cooldown_s=1), clock)
    b.failure(b.admit(), "server")
    clock.now += 1
    probe = b.admit()
    assert probe == "probe" and b.admit() is None
    b.abandon(probe)
    assert b.admit() == "probe"


def test_error_ratio_over_a_full_window() -> None:
    b = Breaker(BreakerConfig(failures=100, error_ratio=0.5, window=10), Clock())
    for failed in [True, False] * 4 + [True]:
        admission = b.admit()
        if failed:
            b.failure(admission, "server")
        else:
            b.success(admission)
    assert b.state == "closed", "5 of 9: the window is not full yet"
    b.failure(b.admit(), "server")
    assert b.state == "open", "6 failures in the last 10"


def test_health_board_shares_targets_and_averages() -> None:
    board = HealthBoard(BreakerConfig(), 0.5, Clock())
    h = board.get(Target("p", "m"))
    assert board.get(Target("p", "m", weight=3)) is h
    h.observe_latency(100)
    h.observe_latency(200)
    h.observe_ttft(40)
    assert h.latency_ms == 150 and h.ttft_ms == 40
    [view] = board.view()
    assert view["state"] == "closed" and view["latency_ms"] == 150
