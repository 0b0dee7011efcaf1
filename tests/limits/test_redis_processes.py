"""Several processes sharing one Redis: the limits hold across them, exactly."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid

import pytest

from tests.conftest import require_service
from tests.limits.conftest import REDIS_URL, drop_keys

pytestmark = pytest.mark.redis

WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from sluice.config.limits import RateLimitConfig
    from sluice.errors import RateLimited
    from sluice.limits import Level, Limiter
    from sluice.limits.redis_state import RedisState

    async def main(url, prefix, n):
        lim = Limiter(RedisState(url, timeout_s=2.0), prefix=prefix)
        level = Level("key", "k1", rate=RateLimitConfig(rpm=100))
        await lim.in_flight([level])  # connect before the start signal
        print("ready", flush=True)
        sys.stdin.readline()
        admitted = 0

        async def one():
            nonlocal admitted
            try:
                ticket = await lim.admit([level], tokens=1)
            except RateLimited:
                return
            admitted += 1
            lim.settle(ticket, tokens=1)

        await asyncio.gather(*(one() for _ in range(n)))
        await lim.close()
        print(admitted, flush=True)

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)


async def test_three_processes_admit_exactly_the_limit():
    require_service("redis", 6379)
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    counts = [334, 333, 333]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, REDIS_URL, prefix, str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in counts
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        admitted = []
        for p in procs:
            out, _ = p.communicate(timeout=30)
            admitted.append(int(out.strip()))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        await drop_keys(prefix)
    assert sum(admitted) == 100
