"""Passive health per target (provider + upstream model): circuit breakers, moving averages of
latency and time to first token, requests in flight. Learnt from real traffic only — Sluice never
sends health pings that cost tokens.

A breaker opens after ``failures`` consecutive failures, or when ``error_ratio`` of the last
``window`` outcomes failed. An open breaker skips its target for ``cooldown_s``; then exactly one
request is let through as a probe, and its outcome closes the breaker or opens it again.
Only errors another attempt could fix (429, 5xx, 529, timeouts, connection errors, unreadable
answers) count as failures: a 400 means the upstream is up.

State is per process: every replica learns from its own traffic — unless the state backend is
Redis, when :mod:`sluice.routing.shared_health` mirrors it to every replica (``listener``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Literal, Protocol, TypeAlias

from sluice.config.routing import BreakerConfig
from sluice.errors import ProviderErrorKind
from sluice.providers.base import Target
from sluice.telemetry.metrics import METRICS

log = logging.getLogger("sluice.routing")

Clock: TypeAlias = Callable[[], float]
#: ``None``: skip the target; ``"pass"``: a normal attempt; ``"probe"``: the one half-open probe.
Admission: TypeAlias = Literal["pass", "probe"] | None
BreakerState: TypeAlias = Literal["closed", "open", "half_open"]


class HealthListener(Protocol):
    """Told of every attempt's outcome (shared health). ``failure`` returns what the attempt loop
    awaits before it moves on, so the failure is counted everywhere first."""

    def success(self, h: TargetHealth, admission: Admission) -> None: ...

    def failure(self, h: TargetHealth, admission: Admission, kind: str) -> Awaitable[None] | None: ...

    async def claim_probe(self, h: TargetHealth) -> bool: ...


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
        "name",
        "open_until",
        "opened",
        "probing",
        "state",
    )

    def __init__(self, cfg: BreakerConfig, clock: Clock, name: tuple[str, str] = ("", "")) -> None:
        #: (provider, upstream model): for the log and the metrics.
        self.name = name
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
            METRICS.breaker_transition(*self.name, "half_open")
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
            self._changed("closed")
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

    def force_open(self, remaining_s: float, kind: ProviderErrorKind | None = None) -> None:
        """Another replica opened this target's breaker (shared health): skip it for ``remaining_s``."""
        if kind is not None:
            self.last_error = kind
        until = self._clock() + remaining_s
        if self.state != "open" or until > self.open_until:
            if self.state != "open":
                self.opened += 1
            self.state = "open"
            self.open_until = until
        self.probing = False

    def force_close(self) -> None:
        """Another replica's probe succeeded (shared health)."""
        if self.state != "closed":
            self.state = "closed"
            self.consecutive = 0
            self.probing = False
            self._reset_window()

    def abandon(self, admission: Admission) -> None:
        """The attempt ended without a verdict (the caller went away): free the probe slot."""
        if admission == "probe":
            self.probing = False

    def _open(self) -> None:
        self.state = "open"
        self.open_until = self._clock() + self._cfg.cooldown_s
        self.opened += 1
        self._changed("open")

    def _changed(self, state: BreakerState) -> None:
        METRICS.breaker_transition(*self.name, state)
        provider, model = self.name
        log.warning(
            "circuit breaker %s for %s/%s", "opened" if state == "open" else "closed", provider, model,
            extra={"event": {"provider": provider, "model": model, "breaker": state,
                             "last_error": self.last_error, "cooldown_s": self._cfg.cooldown_s}},
        )  # fmt: skip

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

    __slots__ = (
        "_alpha", "_board", "_clock", "_max_age_s", "breaker", "failures", "in_flight", "latency_ms", "requests",
        "sampled_at", "target", "ttft_ms",
    )  # fmt: skip

    def __init__(
        self,
        target: Target,
        breaker: Breaker,
        alpha: float,
        clock: Clock,
        max_age_s: float = 60.0,
        board: HealthBoard | None = None,
    ) -> None:
        self._board = board
        self.target = target
        self.breaker = breaker
        self._alpha = alpha
        self._clock = clock
        self._max_age_s = max_age_s
        self.in_flight = 0
        self.requests = 0
        self.failures = 0
        #: Moving averages (None until the first sample).
        self.latency_ms: float | None = None
        self.ttft_ms: float | None = None
        #: Clock time of the newest latency sample.
        self.sampled_at: float | None = None

    @property
    def listener(self) -> HealthListener | None:
        return self._board.listener if self._board is not None else None

    def _stale(self, now: float) -> bool:
        """An estimate older than ``max_age_s`` is replaced by the next sample, not averaged into."""
        return self.sampled_at is None or now - self.sampled_at > self._max_age_s

    def observe_latency(self, ms: float) -> None:
        now = self._clock()
        old = self.latency_ms
        self.latency_ms = ms if old is None or self._stale(now) else old + self._alpha * (ms - old)
        self.sampled_at = now

    def observe_ttft(self, ms: float) -> None:
        now = self._clock()
        old = self.ttft_ms
        self.ttft_ms = ms if old is None or self._stale(now) else old + self._alpha * (ms - old)
        self.sampled_at = now

    def shared_latency(self, latency_ms: float, ttft_ms: float | None) -> None:
        """Estimates merged from every replica (shared health)."""
        self.latency_ms = latency_ms
        if ttft_ms is not None:
            self.ttft_ms = ttft_ms

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
        self,
        cfg: BreakerConfig,
        alpha: float,
        clock: Clock,
        targets: Iterable[Target] = (),
        *,
        max_age_s: float = 60.0,
    ) -> None:
        self._cfg = cfg
        self._alpha = alpha
        self._clock = clock
        self._max_age_s = max_age_s
        self._by_key: dict[tuple[str, str], TargetHealth] = {}
        #: Shared health (Redis), when the state backend is shared: told of every outcome.
        self.listener: HealthListener | None = None
        for t in targets:
            self.get(t)

    def get(self, target: Target) -> TargetHealth:
        key = (target.provider, target.model)
        health = self._by_key.get(key)
        if health is None:
            breaker = Breaker(self._cfg, self._clock, (target.provider, target.model))
            health = TargetHealth(target, breaker, self._alpha, self._clock, self._max_age_s, self)
            self._by_key[key] = health
        return health

    def find(self, provider: str, model: str) -> TargetHealth | None:
        return self._by_key.get((provider, model))

    def all(self) -> list[TargetHealth]:
        return list(self._by_key.values())

    def view(self) -> list[dict[str, object]]:
        return [h.view() for h in self._by_key.values()]
