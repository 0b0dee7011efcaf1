"""Passive health per target (provider + upstream model): circuit breakers, moving averages of
latency and time to first token, requests in flight. Learnt from real traffic only — Sluice never
sends health pings that cost tokens.

A breaker opens after ``failures`` consecutive failures, or when ``error_ratio`` of the last
``window`` outcomes failed. An open breaker skips its target for ``cooldown_s``; then exactly one
request is let through as a probe, and its outcome closes the breaker or opens it again.
Only errors another attempt could fix (429, 5xx, 529, timeouts, connection errors, unreadable
answers) count as failures: a 400 means the upstream is up.

State is per process: every replica learns from its own traffic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal, TypeAlias

from sluice.config.routing import BreakerConfig
from sluice.errors import ProviderErrorKind
from sluice.providers.base import Target

Clock: TypeAlias = Callable[[], float]
#: ``None``: skip the target; ``"pass"``: a normal attempt; ``"probe"``: the one half-open probe.
Admission: TypeAlias = Literal["pass", "probe"] | None
BreakerState: TypeAlias = Literal["closed", "open", "half_open"]


class Breaker:
    __slots__ = (
        "_cfg",
        "_clock",
        "_filled",
        "_pos",
        "_ring",
        "_ring_failures",
        "consecutive",
        "last_error",
        "open_until",
        "opened",
        "probing",
        "state",
    )

    def __init__(self, cfg: BreakerConfig, clock: Clock) -> None:
        self._cfg = cfg
        self._clock = clock
        self._ring = bytearray(cfg.window)
        self._pos = 0
        self._filled = 0
        self._ring_failures = 0
        self.state: BreakerState = "closed"
        self.consecutive = 0
        self.open_until = 0.0
        self.probing = False
        self.opened = 0
        self.last_error: ProviderErrorKind | None = None

    def admit(self) -> Admission:
        if self.state == "closed":
            return "pass"
        if self.state == "open":
            if self._clock() < self.open_until:
                return None
            self.state = "half_open"
        if self.probing:
            return None
        self.probing = True
        return "probe"

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when it is not open)."""
        return max(0.0, self.open_until - self._clock()) if self.state == "open" else 0.0

    def success(self, admission: Admission) -> None:
        self.consecutive = 0
        if admission == "probe":
            self.probing = False
            self.state = "closed"
            self._reset_window()
        elif self.state == "closed":
            self._push(0)

    def failure(self, admission: Admission, kind: ProviderErrorKind) -> None:
        self.last_error = kind
        self.consecutive += 1
        if admission == "probe":
            self.probing = False
            self._open()
            return
        if self.state != "closed":
            return  # a straggler from before the breaker opened
        self._push(1)
        if self.consecutive >= self._cfg.failures or self._ratio_tripped():
            self._open()

    def abandon(self, admission: Admission) -> None:
        """The attempt ended without a verdict (the caller went away): free the probe slot."""
        if admission == "probe":
            self.probing = False

    def _open(self) -> None:
        self.state = "open"
        self.open_until = self._clock() + self._cfg.cooldown_s
        self.opened += 1

    def _push(self, failed: int) -> None:
        ring = self._ring
        self._ring_failures += failed - ring[self._pos]
        ring[self._pos] = failed
        self._pos = (self._pos + 1) % len(ring)
        self._filled = min(self._filled + 1, len(ring))

    def _ratio_tripped(self) -> bool:
        ratio = self._cfg.error_ratio
        return (
            ratio is not None
            and self._filled == len(self._ring)
            and self._ring_failures >= ratio * self._filled
        )

    def _reset_window(self) -> None:
        self._ring = bytearray(len(self._ring))
        self._pos = self._filled = self._ring_failures = 0


class TargetHealth:
    """What routing knows about one target. Strategies read it; only the router writes it."""

    __slots__ = ("_alpha", "breaker", "failures", "in_flight", "latency_ms", "requests", "target", "ttft_ms")

    def __init__(self, target: Target, breaker: Breaker, alpha: float) -> None:
        self.target = target
        self.breaker = breaker
        self._alpha = alpha
        self.in_flight = 0
        self.requests = 0
        self.failures = 0
        #: Moving averages (None until the first sample).
        self.latency_ms: float | None = None
        self.ttft_ms: float | None = None

    def observe_latency(self, ms: float) -> None:
        old = self.latency_ms
        self.latency_ms = ms if old is None else old + self._alpha * (ms - old)

    def observe_ttft(self, ms: float) -> None:
        old = self.ttft_ms
        self.ttft_ms = ms if old is None else old + self._alpha * (ms - old)

    def view(self) -> dict[str, object]:
        b = self.breaker
        return {
            "provider": self.target.provider, "model": self.target.model, "state": b.state,
            "consecutive_failures": b.consecutive, "opened": b.opened, "retry_in_s": round(b.retry_in(), 3),
            "last_error": b.last_error, "in_flight": self.in_flight, "requests": self.requests,
            "failures": self.failures,
            "latency_ms": round(self.latency_ms, 3) if self.latency_ms is not None else None,
            "ttft_ms": round(self.ttft_ms, 3) if self.ttft_ms is not None else None,
        }  # fmt: skip


class HealthBoard:
    """One :class:`TargetHealth` per (provider, upstream model), shared by every model using it."""

    def __init__(
        self, cfg: BreakerConfig, alpha: float, clock: Clock, targets: Iterable[Target] = ()
    ) -> None:
        self._cfg = cfg
        self._alpha = alpha
        self._clock = clock
        self._by_key: dict[tuple[str, str], TargetHealth] = {}
        for t in targets:
            self.get(t)

    def get(self, target: Target) -> TargetHealth:
        key = (target.provider, target.model)
        health = self._by_key.get(key)
        if health is None:
            health = TargetHealth(target, Breaker(self._cfg, self._clock), self._alpha)
            self._by_key[key] = health
        return health

    def view(self) -> list[dict[str, object]]:
        return [h.view() for h in self._by_key.values()]
