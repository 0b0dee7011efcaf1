"""Shared limit state in Redis: every admission, extension and settlement is one EVALSHA.

Every call has a short socket timeout. A call that cannot reach Redis raises
:class:`~sluice.errors.ServiceUnavailable`; :mod:`sluice.limits.resilient` turns that into the
configured outage behaviour. Settlements run in background tasks; one that fails is kept (bounded)
and retried once Redis answers again, so spend is not lost to a short outage.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Coroutine, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError
from redis.retry import Retry

from sluice.errors import ServiceUnavailable
from sluice.limits import redis_lua
from sluice.limits.model import (
    WINDOW_S,
    Admission,
    BudgetCheck,
    BudgetUsage,
    LimitKind,
    RateStatus,
    Settlement,
    SpendChange,
    Verdict,
)
from sluice.limits.state import SpendListener
from sluice.limits.window import RPM_SLICE_S

log = logging.getLogger("sluice.limits")

T = TypeVar("T")
_KINDS: tuple[LimitKind, ...] = ("rpm", "tpm", "concurrent", "budget")
_PENDING_MAX = 100_000
_GRACE_S = 7 * 86400


def _rate_keys(key: str) -> tuple[str, ...]:
    return f"{key}:r", f"{key}:rw", f"{key}:rs", f"{key}:t", f"{key}:tw", f"{key}:c"


def _ttl(bc: BudgetCheck, now: float) -> int:
    """Seconds a budget period's state is kept: to the period's end, plus a week for late settles."""
    return max(60, int(bc.expires_at - now) + _GRACE_S)


def _num(v: float) -> str:
    return f"{v:.6f}"


class RedisState:
    """:class:`~sluice.limits.state.LimitState` on one Redis server (or a primary).

    ``server_time``: take "now" from Redis (one timeline for all replicas) instead of
    ``Admission.now``; tests with a fake clock turn it off.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 0.25,
        max_connections: int = 64,
        server_time: bool = True,
    ) -> None:
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            # Waiting for a free connection is load, not an outage: allow longer than one call.
            timeout=timeout_s * 3,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        self._redis: aioredis.Redis = aioredis.Redis(connection_pool=pool)
        self._timeout = timeout_s
        self._server_time = server_time
        self._admit = self._redis.register_script(redis_lua.ADMIT)
        self._settle = self._redis.register_script(redis_lua.SETTLE)
        self._extend = self._redis.register_script(redis_lua.EXTEND)
        self._usage = self._redis.register_script(redis_lua.USAGE)
        self._in_flight = self._redis.register_script(redis_lua.IN_FLIGHT)
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending: deque[tuple[Settlement, SpendListener | None]] = deque(maxlen=_PENDING_MAX)

    async def _call(self, script: AsyncScript, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        try:
            async with asyncio.timeout(self._timeout * 4):
                return await self._run(script, keys, args)
        except (RedisError, OSError, TimeoutError) as exc:
            raise ServiceUnavailable(f"limit state (Redis) unreachable: {type(exc).__name__}") from None

    async def _run(self, script: AsyncScript, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        # One round trip normally (EVALSHA); after a Redis restart the script is loaded again.
        try:
            return await self._redis.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await _awaited(script(keys=list(keys), args=list(args)))

    def _now(self, now: float) -> str:
        return "-1" if self._server_time else _num(now)

    # ------------------------------------------------------------------ LimitState

    async def admit(self, adm: Admission) -> Verdict:
        keys: list[str] = []
        args: list[str | int] = [
            self._now(adm.now),
            adm.ticket_id,
            len(adm.rates),
            len(adm.budgets),
            adm.tokens,
            adm.cost_nano,
            _num(adm.lease_s),
            _num(WINDOW_S),
            _num(RPM_SLICE_S),
        ]
        for rc in adm.rates:
            keys.extend(_rate_keys(rc.key))
            args.extend((rc.rpm or 0, rc.tpm or 0, rc.concurrent or 0))
        for bc in adm.budgets:
            keys.extend((bc.key, f"{bc.key}:l"))
            args.extend((bc.limit_nano, _ttl(bc, adm.now)))
        out = await self._call(self._admit, keys, args)
        if self._pending:
            self._spawn(self._retry_pending())
        if int(out[0]) == 0:
            _, index, kind, wait_ms, hard = (int(x) for x in out)
            return Verdict(False, index, _KINDS[kind - 1], wait_ms / 1000.0, hard=bool(hard))
        statuses = []
        for i in range(len(adm.rates)):
            rl, rr, tl, tr = (int(x) for x in out[1 + 4 * i : 5 + 4 * i])
            statuses.append(
                RateStatus(rl if rl >= 0 else None, rr / 1000.0, tl if tl >= 0 else None, tr / 1000.0)
            )
        return Verdict(True, rates=tuple(statuses))

    def settle(self, s: Settlement, backend: str = "shared", on_spend: SpendListener | None = None) -> None:
        self._spawn(self._settle_or_keep(s, on_spend))

    async def _settle_or_keep(self, s: Settlement, on_spend: SpendListener | None) -> None:
        try:
            changes = await self.settle_now(s)
        except ServiceUnavailable:
            if len(self._pending) == self._pending.maxlen:
                log.error("limit state unreachable: dropping an unsettled request (pending queue full)")
            self._pending.append((s, on_spend))
            return
        if on_spend is not None and changes:
            on_spend(changes)

    async def settle_now(self, s: Settlement) -> list[SpendChange]:
        keys: list[str] = []
        args: list[str | int] = [
            s.ticket_id,
            len(s.rates),
            len(s.budgets),
            s.tokens_actual,
            s.cost_actual_nano,
        ]
        for rc in s.rates:
            keys.extend(_rate_keys(rc.key))
            args.extend(("1" if rc.tpm else "0", "1" if rc.concurrent else "0"))
        for bc in s.budgets:
            keys.extend((bc.key, f"{bc.key}:l"))
            args.append(_ttl(bc, s.now))
        out = await self._call(self._settle, keys, args)
        return [SpendChange(bc.key, int(out[2 * j]), int(out[2 * j + 1])) for j, bc in enumerate(s.budgets)]

    async def _retry_pending(self) -> None:
        while self._pending:
            s, on_spend = self._pending.popleft()
            try:
                changes = await self.settle_now(s)
            except ServiceUnavailable:
                self._pending.appendleft((s, on_spend))
                return
            if on_spend is not None and changes:
                on_spend(changes)

    async def extend(
        self, ticket_id: str, budgets: Sequence[BudgetCheck], extra_nano: int, now: float, backend: str = ""
    ) -> bool:
        keys = [k for bc in budgets for k in (bc.key, f"{bc.key}:l")]
        args: list[str | int] = [self._now(now), ticket_id, extra_nano, len(budgets)]
        args.extend(bc.limit_nano for bc in budgets)
        return int(await self._call(self._extend, keys, args)) == 1

    async def usage(self, budgets: Sequence[BudgetCheck], now: float) -> list[BudgetUsage]:
        keys = [k for bc in budgets for k in (bc.key, f"{bc.key}:l")]
        out = await self._call(self._usage, keys, [self._now(now)])
        return [BudgetUsage(int(out[2 * j]), int(out[2 * j + 1])) for j in range(len(budgets))]

    async def in_flight(self, keys: Sequence[str], now: float) -> list[int]:
        out = await self._call(self._in_flight, [f"{k}:c" for k in keys], [self._now(now)])
        return [int(x) for x in out]

    async def budget_keys(self, prefix: str) -> list[str]:
        found: list[str] = []
        try:
            async with asyncio.timeout(self._timeout * 8):
                async for raw in self._redis.scan_iter(match=f"{_glob_escape(prefix)}*", count=500):
                    key = raw.decode() if isinstance(raw, bytes) else str(raw)
                    if not key.endswith(":l"):
                        found.append(key)
        except (RedisError, OSError, TimeoutError) as exc:
            raise ServiceUnavailable(f"limit state (Redis) unreachable: {type(exc).__name__}") from None
        return found

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(self._timeout * 2):
                return bool(await _awaited(self._redis.ping()))
        except (RedisError, OSError, TimeoutError):
            return False

    async def flush(self) -> None:
        if self._pending:
            await self._retry_pending()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        await self.flush()
        await self._redis.aclose()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # settled from a finaliser outside the loop: nothing can run it now
            coro.close()
            log.error("limit state: a settlement was dropped (no running event loop)")
            return
        task = loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _awaited(value: Awaitable[T] | T) -> T:
    if isinstance(value, Awaitable):
        return await value
    return value


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
