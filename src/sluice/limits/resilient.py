"""Shared state with a configured behaviour for when it is unreachable (``state.on_outage``).

While Redis answers, everything goes to it. When a call fails, the state is marked down for
``retry_s``: meanwhile no request waits on it. Budget-limited requests fail closed (503) or open
(budgets not enforced); rate limits fall back to this replica's in-memory limits, fail open or
fail closed. After ``retry_s`` one request probes; when it succeeds the shared limits hold again.
Tickets are settled where they were admitted.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence

from sluice.config.model import OutageConfig
from sluice.errors import ServiceUnavailable
from sluice.limits.memory import MemoryState
from sluice.limits.model import Admission, BudgetCheck, BudgetUsage, Clock, Settlement, Verdict
from sluice.limits.redis_state import RedisState
from sluice.limits.state import SpendListener
from sluice.telemetry.metrics import METRICS

log = logging.getLogger("sluice.limits")

BUDGETS_DOWN = (
    "budgets cannot be checked: the shared limit state (Redis) is unreachable; "
    "budget-limited requests are refused until it is back"
)
RATES_DOWN = "rate limits cannot be checked: the shared limit state (Redis) is unreachable"


class ResilientState:
    def __init__(
        self,
        shared: RedisState,
        policy: OutageConfig,
        *,
        retry_s: float = 1.0,
        monotonic: Clock = time.monotonic,
    ) -> None:
        self.shared = shared
        self.local = MemoryState()
        self._policy = policy
        self._retry_s = retry_s
        self._monotonic = monotonic
        self._down_until = 0.0
        self._down = False
        self._probing = False

    def _should_try(self) -> bool:
        if not self._down:
            return True
        if self._probing or self._monotonic() < self._down_until:
            return False
        self._probing = True
        return True

    def _mark(self, ok: bool) -> None:
        self._probing = False
        if ok:
            if self._down:
                log.warning("limit state (Redis) is reachable again: shared limits and budgets resume")
            self._down = False
            return
        METRICS.state_error("redis")
        if not self._down:
            log.error(
                "limit state (Redis) unreachable: budgets %s, rate limits %s",
                self._policy.budgets,
                self._policy.rate_limits,
            )
        self._down = True
        self._down_until = self._monotonic() + self._retry_s

    async def admit(self, adm: Admission) -> Verdict:
        if self._should_try():
            try:
                verdict = await self.shared.admit(adm)
            except ServiceUnavailable:
                self._mark(False)
            else:
                self._mark(True)
                return dataclasses.replace(verdict, backend="shared")
        return self._degraded_admit(adm)

    def _degraded_admit(self, adm: Admission) -> Verdict:
        if adm.budgets:
            if self._policy.budgets == "fail_closed":
                raise ServiceUnavailable(BUDGETS_DOWN, retry_after=self._retry_s)
            adm = dataclasses.replace(adm, budgets=())
        mode = self._policy.rate_limits
        if not adm.rates or mode == "fail_open":
            return Verdict(True, backend="none")
        if mode == "fail_closed":
            raise ServiceUnavailable(RATES_DOWN, retry_after=self._retry_s)
        return dataclasses.replace(self.local.admit_now(adm), backend="local")

    def settle(self, s: Settlement, backend: str, on_spend: SpendListener | None = None) -> None:
        if backend == "shared":
            self.shared.settle(s, backend, on_spend)
        elif backend == "local":
            self.local.settle(dataclasses.replace(s, budgets=()), backend)

    async def extend(
        self, ticket_id: str, budgets: Sequence[BudgetCheck], extra_nano: int, now: float, backend: str
    ) -> bool:
        if backend != "shared":
            return True  # admitted while budgets were not enforced (fail_open)
        if self._should_try():
            try:
                ok = await self.shared.extend(ticket_id, budgets, extra_nano, now)
            except ServiceUnavailable:
                self._mark(False)
            else:
                self._mark(True)
                return ok
        return self._policy.budgets == "fail_open"

    async def usage(self, budgets: Sequence[BudgetCheck], now: float) -> list[BudgetUsage]:
        return await self.shared.usage(budgets, now)

    async def in_flight(self, keys: Sequence[str], now: float) -> list[int]:
        local = await self.local.in_flight(keys, now)
        try:
            shared = await self.shared.in_flight(keys, now)
        except ServiceUnavailable:
            return local
        return [a + b for a, b in zip(shared, local, strict=True)]

    async def budget_keys(self, prefix: str) -> list[str]:
        return await self.shared.budget_keys(prefix)

    async def flush(self) -> None:
        await self.shared.flush()

    async def close(self) -> None:
        await self.shared.close()
