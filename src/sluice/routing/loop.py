"""The attempt loop: one request's way through its ordered targets.

Round 0 tries each target once, in order. A failure whose kind the plan lists in ``fallback_on``
moves on to the next target at once (``context_window`` only to targets with a larger window);
any other kind is returned at once — 400, 401, 403, 404 and 422 are never retried. Targets that
failed with a ``retry_on`` kind are tried again in the next round, after an exponential backoff with
jitter and never before their own ``retry-after`` (an upstream asking for longer than
``max_retry_after_s`` is not retried). Before every attempt:

* a target whose breaker is open is skipped (no attempt is counted);
* the request's attempt bound (``max_attempts``) and time limit are checked;
* any attempt after the first takes a slot of the retry budget, or the loop stops;
* the attempt guard (provider-account limits) may refuse the target: the loop moves on.

When the loop stops without an answer it raises the last upstream error; if no upstream was tried
because every breaker was open, an error of the kind that opened them, with ``retry_after``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sluice.config.model import ProviderConfig
from sluice.errors import BadRequest, ProviderError, SluiceError
from sluice.providers.base import Target
from sluice.routing.attempt import AttemptGuard, AttemptTracker
from sluice.routing.calls import Call
from sluice.routing.health import HealthBoard, TargetHealth
from sluice.routing.retry import RetryBudget, backoff_s
from sluice.routing.routes import Plan
from sluice.routing.strategies import Option
from sluice.schema.context import Attempt, RequestContext
from sluice.telemetry.metrics import METRICS
from sluice.telemetry.tracing import TRACING
from sluice.transport.client import Deadline

log = logging.getLogger("sluice.routing")

T = TypeVar("T")

CONTINUE, NEXT_ROUND, STOP, ANSWERED = range(4)


@dataclass(frozen=True, slots=True)
class LoopEnv:
    """What every loop shares (built once by the Router)."""

    health: HealthBoard
    budget: RetryBudget | None
    providers: dict[str, ProviderConfig]
    clock: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]]
    rand: Callable[[], float]
    guard: AttemptGuard | None


class AttemptLoop(Generic[T]):
    __slots__ = (
        "_answer", "_call", "_ctx", "_end", "_env", "_last", "_made", "_min_window", "_not_before",
        "_open", "_plan", "_refusal", "_waited",
    )  # fmt: skip

    def __init__(self, env: LoopEnv, ctx: RequestContext, plan: Plan, call: Call[T]) -> None:
        self._env = env
        self._ctx = ctx
        self._plan = plan
        self._call = call
        self._end = env.clock() + plan.timeout_s
        self._made = 0
        self._waited = 0.0
        self._last: ProviderError | None = None
        self._refusal: SluiceError | None = None
        self._open: TargetHealth | None = None
        self._min_window: int | None = None
        self._not_before: dict[tuple[str, str], float] = {}
        self._answer: T | None = None

    async def run(self, options: list[Option]) -> T:
        pending = options
        retry = self._plan.retry
        for round_no in range(retry.retries + 1):
            if round_no and not (
                pending and await self._pause(backoff_s(retry.backoff, round_no, self._env.rand))
            ):
                break
            again: list[Option] = []
            step = CONTINUE
            for opt in pending:
                step = await self._step(opt, again)
                if step != CONTINUE:
                    break
            if step == ANSWERED:
                assert self._answer is not None
                return self._answer
            if step == STOP:
                break
            pending = again
        if self._made > 1 and self._last is not None:
            log.warning("no upstream answered: retries and fallbacks exhausted", extra={"event": {
                "model": self._ctx.requested_model, "attempts": self._made, "error_kind": self._last.kind}})  # fmt: skip
        raise self._failure()

    def _note(self, text: str) -> None:
        ctx = self._ctx
        ctx.route_reason = f"{ctx.route_reason}; {text}" if ctx.route_reason else text

    async def _pause(self, delay: float) -> bool:
        if self._env.clock() + delay >= self._end:
            self._note("no time left for a retry")
            return False
        await self._env.sleep(delay)
        self._waited += delay
        return True

    async def _step(self, opt: Option, again: list[Option]) -> int:
        t = opt.target
        if self._min_window is not None and opt.window is not None and opt.window <= self._min_window:
            return CONTINUE
        if not self._call.applies(t):
            return CONTINUE
        health = self._env.health.get(t)
        admission = health.breaker.admit()
        if (
            admission == "probe"
            and health.listener is not None
            and not await health.listener.claim_probe(health)
        ):
            admission = None  # another replica sends the one probe (claim_probe re-opened the breaker)
        if admission is None:
            self._open = self._open or health
            self._note(f"skipped {t.provider}/{t.model}: circuit open")
            return CONTINUE
        limit = self._limit_reached()
        if limit is not None:
            health.breaker.abandon(admission)
            self._note(limit)
            return STOP
        budget = self._env.budget if self._made else None
        try:
            deadline, handle = await self._prepare(t)
        except BaseException as exc:  # a skip, or the caller went away while waiting
            health.breaker.abandon(admission)
            if budget is not None:
                budget.release()
            if not isinstance(exc, _Skip):
                raise
            self._note(exc.note)
            return exc.code
        tracker = AttemptTracker(self._new_attempt(t), health, admission, budget)
        tracker.traceparent = TRACING.attempt_started(self._ctx, tracker.attempt)
        if self._env.guard is not None:
            tracker.guard, tracker.handle = self._env.guard, handle
        return await self._attempt(opt, tracker, deadline, again)

    def _limit_reached(self) -> str | None:
        """Why no further attempt may start (and takes a retry-budget slot if one may)."""
        if self._made >= self._plan.retry.max_attempts:
            return f"attempt limit ({self._made}) reached"
        budget = self._env.budget
        if self._made and budget is not None and not budget.try_acquire():
            METRICS.retry_budget_refused()
            return "retry budget exhausted"
        return None

    async def _prepare(self, t: Target) -> tuple[Deadline, Any]:
        """Wait out the target's retry-after, fix the attempt's deadline, pass the attempt guard."""
        env = self._env
        until = self._not_before.get((t.provider, t.model))
        wait = until - env.clock() if until is not None else 0.0
        if wait > 0:
            if env.clock() + wait >= self._end:
                raise _Skip(
                    CONTINUE, f"skipped {t.provider}/{t.model}: its retry-after passes the time limit"
                )
            await env.sleep(wait)
            self._waited += wait
        left = self._end - env.clock()
        if left <= 0:
            raise _Skip(STOP, "the request ran out of time")
        timeout = t.timeout_s or env.providers[t.provider].timeout_s
        first = min(timeout, left)
        deadline = Deadline(total_s=first, first_byte_s=first, idle_s=timeout)
        if env.guard is None:
            return deadline, None
        try:
            return deadline, await env.guard.admit_attempt(self._ctx, t.provider)
        except SluiceError as exc:
            self._refusal = exc
            raise _Skip(CONTINUE, f"skipped {t.provider}/{t.model}: {exc.message}") from None

    def _new_attempt(self, t: Target) -> Attempt:
        attempt = Attempt(provider=t.provider, model=t.model, backoff_ms=self._waited * 1000.0)
        self._waited = 0.0
        self._ctx.attempts.append(attempt)
        self._made += 1
        return attempt

    async def _attempt(
        self, opt: Option, tracker: AttemptTracker, deadline: Deadline, again: list[Option]
    ) -> int:
        attempt = tracker.attempt
        try:
            self._answer = await self._call(opt.target, tracker, deadline)
        except ProviderError as exc:
            if attempt.status is None:
                attempt.status = exc.upstream_status
            attempt.error_kind = exc.kind
            tracker.end(exc.kind)
            log.warning("upstream attempt failed", extra={"event": {
                "provider": attempt.provider, "model": attempt.model, "error_kind": exc.kind,
                "upstream_status": attempt.status, "attempt": self._made}})  # fmt: skip
            if tracker.report is not None:
                await tracker.report  # counted by every replica before the next attempt (bounded)
            return self._after_failure(opt, exc, again)
        except BaseException:
            tracker.end(None, abandoned=True)
            raise
        self._ctx.provider, self._ctx.served_model = opt.target.provider, opt.target.model
        return ANSWERED

    def _after_failure(self, opt: Option, exc: ProviderError, again: list[Option]) -> int:
        self._last = exc
        plan = self._plan
        if exc.kind == "context_window":
            if "context_window" not in plan.fallback_on:
                return STOP
            self._min_window = max(self._min_window or 0, opt.window or 0)
            return CONTINUE
        if not exc.retryable:
            return STOP
        wait = exc.retry_after
        if exc.kind in plan.retry_on and (wait is None or wait <= plan.retry.max_retry_after_s):
            again.append(opt)
            if wait:
                self._not_before[(opt.target.provider, opt.target.model)] = self._env.clock() + wait
        return CONTINUE if exc.kind in plan.fallback_on else NEXT_ROUND

    def _failure(self) -> SluiceError:
        if self._last is not None:
            return self._last
        if self._refusal is not None:
            return self._refusal
        if self._open is not None:
            b, t = self._open.breaker, self._open.target
            kind = b.last_error or "overloaded"
            err = ProviderError(
                kind, f"'{t.model}' is failing ({kind}); circuit open, retry in {b.retry_in():.0f}s",
                provider=t.provider,
            )  # fmt: skip
            err.retry_after = max(1.0, b.retry_in())
            return err
        if self._made == 0 and self._end <= self._env.clock():
            return ProviderError("timeout", "the request ran out of time", provider="-")
        return BadRequest(f"model '{self._ctx.requested_model}' has no target that can serve this request")


class _Skip(Exception):
    def __init__(self, code: int, note: str) -> None:
        super().__init__(note)
        self.code = code
        self.note = note
