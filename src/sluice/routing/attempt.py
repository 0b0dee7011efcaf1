"""One upstream attempt's bookkeeping, and the per-attempt hook for provider-account limits.

An :class:`AttemptTracker` is made when an attempt starts and ended exactly once when it is over —
for a stream, when the stream ends. Ending it updates the target's health (in-flight count, breaker,
moving averages), gives back the retry-budget slot, records the billed usage on the request
record's :class:`Attempt`, and settles the attempt guard's handle.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Protocol

from sluice.config.routing import RETRY_KINDS
from sluice.errors import ProviderErrorKind
from sluice.limits.model import Ticket
from sluice.routing.health import Admission, TargetHealth
from sluice.routing.retry import RetryBudget
from sluice.schema.chat import Usage
from sluice.schema.context import Attempt, RequestContext

_FAILURE_KINDS = frozenset(RETRY_KINDS)


class AttemptGuard(Protocol):
    """The per-attempt hook: admission of one upstream attempt (provider-account rate limits),
    implemented by the quotas middleware and passed to the Router.

    ``admit_attempt`` runs before each upstream attempt, once the target is chosen. To refuse it
    raises a :class:`~sluice.errors.SluiceError` (``RateLimited``): routing moves on to the next
    target without counting an upstream attempt, and returns the refusal if no target is left.
    The handle it returns is settled exactly once when the attempt is over — for a stream, when the
    stream ends — with what the provider billed (None if nothing or unknown; for a stream cut short,
    an estimate of what was relayed).
    """

    async def admit_attempt(self, ctx: RequestContext, provider: str) -> Ticket | None: ...

    def settle_attempt(self, handle: Ticket | None, usage: Usage | None) -> None: ...


class AttemptTracker:
    __slots__ = (
        "_admission",
        "_budget",
        "_committed",
        "_ended",
        "_started",
        "attempt",
        "guard",
        "handle",
        "health",
        "report",
        "traceparent",
    )

    def __init__(
        self,
        attempt: Attempt,
        health: TargetHealth,
        admission: Admission,
        budget: RetryBudget | None,
    ) -> None:
        self.attempt = attempt
        self.health = health
        #: Set when an attempt guard admitted the attempt: settled in ``end``.
        self.guard: AttemptGuard | None = None
        self.handle: Ticket | None = None
        #: Sent upstream as ``traceparent`` (this attempt's CLIENT span), if any.
        self.traceparent: str | None = None
        self._admission = admission
        self._budget = budget
        self._started = time.perf_counter()  # latency is measured in real time, whatever the clock
        self._committed = False
        self._ended = False
        #: The shared-health report of a failure, awaited by the attempt loop (None: nothing to wait).
        self.report: Awaitable[None] | None = None
        health.in_flight += 1
        health.requests += 1

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self._started) * 1000.0

    def commit(self) -> None:
        """A stream's first chunk arrived: the target answered (closes a probing breaker)."""
        self._committed = True
        self.health.observe_ttft(self.elapsed_ms())
        self.health.breaker.success(self._admission)
        self._shared_success()
        self._admission = "pass"

    def end(
        self,
        kind: ProviderErrorKind | None,
        usage: Usage | None = None,
        *,
        estimated: bool = False,
        abandoned: bool = False,
    ) -> None:
        """``kind``: the error kind that ended the attempt (None = answered, or the caller left);
        ``abandoned``: cancelled before the upstream gave any verdict."""
        if self._ended:
            return
        self._ended = True
        ms = self.elapsed_ms()
        attempt = self.attempt
        attempt.latency_ms = ms
        if usage is not None:
            attempt.usage, attempt.estimated = usage, estimated
        health = self.health
        health.in_flight -= 1
        if self._budget is not None:
            self._budget.release()
        breaker = health.breaker
        listener = health.listener
        if kind in _FAILURE_KINDS:
            health.failures += 1
            breaker.failure(self._admission, kind)
            if listener is not None:
                self.report = listener.failure(health, self._admission, kind)
            if kind == "timeout" and not self._committed:
                health.observe_latency(ms)  # a timeout is a (lower-bound) latency sample
        elif abandoned:
            breaker.abandon(self._admission)
        elif not self._committed:
            breaker.success(self._admission)  # an answer, or an error that says the upstream is up
            if kind is None:
                health.observe_latency(ms)
            self._shared_success()
        if self.guard is not None:
            self.guard.settle_attempt(self.handle, usage)

    def _shared_success(self) -> None:
        listener = self.health.listener
        if listener is not None:
            listener.success(self.health, self._admission)
