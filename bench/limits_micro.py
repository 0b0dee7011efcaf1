"""Micro-benchmark of the limits hot path: ``.venv/bin/python bench/limits_micro.py [redis-url]``.

Reports µs per admit+settle (memory and Redis, 4 levels: key rpm/tpm/concurrency, team budget,
user rpm) and ms per prompt token count. Never part of the test run.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from decimal import Decimal

from sluice.config.limits import BudgetConfig, RateLimitConfig
from sluice.limits import Level, Limiter, MemoryState
from sluice.limits.redis_state import RedisState
from sluice.limits.tokens import TokenCounter
from sluice.schema.chat import ChatRequest, Message

LEVELS = [
    Level("key", "k1", rate=RateLimitConfig(rpm=10**9, tpm=10**12, concurrent=10**6)),
    Level("team", "t", budget=BudgetConfig(usd=Decimal(10**6))),
    Level("user", "t/u", rate=RateLimitConfig(rpm=10**9)),
]


async def per_admission(lim: Limiter, n: int, concurrency: int = 1) -> float:
    async def worker(k: int) -> None:
        for _ in range(k):
            t = await lim.admit(LEVELS, tokens=500, cost=Decimal("0.001"))
            lim.settle(t, tokens=400, cost=Decimal("0.0008"))

    start = time.perf_counter()
    await asyncio.gather(*(worker(n // concurrency) for _ in range(concurrency)))
    await lim.flush()
    return (time.perf_counter() - start) / n * 1e6


async def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/0"
    mem = Limiter(MemoryState())
    await per_admission(mem, 2000)
    print(f"memory  admit+settle: {await per_admission(mem, 20000):7.1f} µs")
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    red = Limiter(RedisState(url), prefix=prefix)
    await per_admission(red, 200)
    print(f"redis   admit+settle: {await per_admission(red, 3000):7.1f} µs  (sequential, wall time)")
    print(f"redis   admit+settle: {await per_admission(red, 10000, 50):7.1f} µs  (50 concurrent, wall/op)")
    await red.close()

    counter = TokenCounter()
    counter.preload()
    with open(asyncio.__file__.replace("__init__.py", "base_events.py"), encoding="utf-8") as f:
        source = f.read()
    for chars in (2_000, 8_000, 24_000):
        req = ChatRequest(model="gpt-4o", messages=[Message(role="user", content=source[:chars])])
        tokens = counter.count_chat(req).tokens
        start = time.perf_counter()
        for _ in range(200):
            counter.count_chat(req)
        ms = (time.perf_counter() - start) / 200 * 1e3
        print(f"tokens  {chars:6d} chars = {tokens:5d} tokens: {ms:.3f} ms")


if __name__ == "__main__":
    asyncio.run(main())
