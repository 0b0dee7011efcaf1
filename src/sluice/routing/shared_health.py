"""Health shared by every replica through Redis (``state.url: redis://...``).

Each replica keeps its local :class:`~sluice.routing.health.HealthBoard` — admission stays a local,
synchronous check on the hot path — and mirrors it through Redis:

* **Failures** are counted in Redis by one Lua script (consecutive failures and the error-ratio
  window, the same rule as the local breaker) and the attempt that failed waits for it (failures
  are off the hot path; the wait is capped by the socket timeout). When the shared count trips the
  breaker, the script publishes it and every replica opens its local breaker at once, for the
  remaining cooldown: the replicas together send a failing target no more requests than one would.
* **Recovery** is tested by a single probe: when the cooldown ends, a replica must win a lease in
  Redis (``SET NX``) before its probe may go; the others keep the target skipped. The probe's
  outcome is published: a success closes every replica's breaker, a failure opens them all again.
* **Successes and latency** are batched: every ``sync_s`` each replica reports its successes (they
  reset the consecutive count and fill the ratio window) and its latency estimates, and reads
  back the shared estimates (an average of every replica's, weighted by their recent samples)
  and any open breaker it missed.

If Redis cannot be reached, every call gives up within the socket timeout and the replica falls
back to its own view until Redis answers again. Keys (``sluice:h:<provider>:<model>``) expire a
day after their last use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any, cast

import msgspec
import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from sluice.config.routing import BreakerConfig
from sluice.errors import PROVIDER_ERROR_KINDS, ProviderErrorKind
from sluice.routing.health import Admission, HealthBoard, TargetHealth

log = logging.getLogger("sluice.routing")

_KEY_TTL_S = 86400
#: KEYS[1] target hash, KEYS[2] probe lease; ARGV: channel, window, failures, ratio, cooldown_ms, probe, kind, name
_FAIL = """
local t = redis.call('TIME'); local now = t[1] * 1000 + math.floor(t[2] / 1000)
local ou = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
local probe = ARGV[6] == '1'
redis.call('EXPIRE', KEYS[1], 86400)
if ou > now and not probe then return ou - now end
local c = redis.call('HINCRBY', KEYS[1], 'consecutive', 1)
redis.call('HSET', KEYS[1], 'last_error', ARGV[7])
local window = tonumber(ARGV[2])
local ring = string.sub((redis.call('HGET', KEYS[1], 'ring') or '') .. '1', -window)
local _, bad = string.gsub(ring, '1', '')
local ratio = tonumber(ARGV[4])
local trip = probe or c >= tonumber(ARGV[3]) or (ratio > 0 and #ring == window and bad >= ratio * window)
if not trip then redis.call('HSET', KEYS[1], 'ring', ring); return 0 end
local cool = tonumber(ARGV[5])
redis.call('HSET', KEYS[1], 'open_until', now + cool, 'ring', '', 'consecutive', 0)
redis.call('HINCRBY', KEYS[1], 'opened', 1)
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', ARGV[1], 'open ' .. cool .. ' ' .. ARGV[8])
return cool
"""
#: KEYS[1] target hash, KEYS[2] probe lease; ARGV: channel, window, successes, probe, name, replica, lat, ttft, n
_OK = """
redis.call('EXPIRE', KEYS[1], 86400)
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[1], 'open_until', 0, 'ring', '', 'consecutive', 0)
  redis.call('DEL', KEYS[2])
  redis.call('PUBLISH', ARGV[1], 'close 0 ' .. ARGV[5])
  return 1
end
local n = tonumber(ARGV[3])
if n > 0 then
  local window = tonumber(ARGV[2])
  local ring = (redis.call('HGET', KEYS[1], 'ring') or '') .. string.rep('0', math.min(n, window))
  redis.call('HSET', KEYS[1], 'consecutive', 0, 'ring', string.sub(ring, -window))
end
if ARGV[7] ~= '' then
  redis.call('HSET', KEYS[1], 'lat:' .. ARGV[6], ARGV[7] .. ' ' .. ARGV[8] .. ' ' .. ARGV[9])
end
return 0
"""
#: KEYS[1] probe lease, KEYS[2] target hash; ARGV: lease_ms
_PROBE = """
local t = redis.call('TIME'); local now = t[1] * 1000 + math.floor(t[2] / 1000)
local ou = tonumber(redis.call('HGET', KEYS[2], 'open_until') or '0')
if ou > now then return ou - now end
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return 0 end
return tonumber(redis.call('PTTL', KEYS[1]))
"""
#: KEYS: target hashes; returns, per key, {remaining open ms, every replica's "lat ttft n"}
_READ = """
local t = redis.call('TIME'); local now = t[1] * 1000 + math.floor(t[2] / 1000)
local out = {}
for i, k in ipairs(KEYS) do
  local ou = tonumber(redis.call('HGET', k, 'open_until') or '0')
  local lats = {}
  local all = redis.call('HGETALL', k)
  for j = 1, #all, 2 do
    if string.sub(all[j], 1, 4) == 'lat:' then table.insert(lats, all[j + 1]) end
  end
  table.insert(out, {math.max(0, ou - now), lats})
end
return out
"""


class SharedHealth:
    """Mirrors a :class:`HealthBoard` through Redis; attached to each :class:`TargetHealth`."""

    def __init__(
        self,
        url: str,
        board: HealthBoard,
        cfg: BreakerConfig,
        *,
        prefix: str = "sluice:h:",
        timeout_s: float = 0.25,
        sync_s: float = 0.25,
    ) -> None:
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0)
        )
        self._board = board
        self._cfg = cfg
        self._prefix = prefix
        self._channel = f"{prefix}events"
        self._timeout = timeout_s
        self._sync_s = sync_s
        self._replica = f"{int(time.time() * 1000) % 10**9:x}{id(self) % 65536:x}"
        self._fail = self._redis.register_script(_FAIL)
        self._ok = self._redis.register_script(_OK)
        self._probe = self._redis.register_script(_PROBE)
        self._read = self._redis.register_script(_READ)
        self._successes: dict[tuple[str, str], int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._spawned: set[asyncio.Task[Any]] = set()
        #: Redis answered the last call (False: this replica uses its own view).
        self.up = True
        self._closing = False

    def _keys(self, h: TargetHealth) -> list[str]:
        base = f"{self._prefix}{h.target.provider}:{h.target.model}"
        return [base, base + ":probe"]

    async def start(self) -> None:
        self._board.listener = self
        self._tasks = [
            asyncio.create_task(self._subscribe(), name="sluice-health-subscribe"),
            asyncio.create_task(self._sync_forever(), name="sluice-health-sync"),
        ]

    async def close(self) -> None:
        """Stop sharing, within about a second whatever Redis does (a cancellation that a Redis
        read swallows must not hold up the shutdown)."""
        self._board.listener = None
        self._closing = True
        tasks = [*self._tasks, *self._spawned]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=self._timeout * 4)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._redis.aclose(), self._timeout * 4)

    async def _call(self, script: Any, keys: Sequence[str], args: Sequence[object]) -> Any:
        try:
            async with asyncio.timeout(self._timeout * 4):
                out = await script(keys=list(keys), args=list(args))
        except (RedisError, OSError, TimeoutError) as exc:
            if self.up:
                log.warning(
                    "shared health: Redis unreachable (%s); using this replica's view", type(exc).__name__
                )
            self.up = False
            return None
        self.up = True
        return out

    # ------------------------------------------------------------------ called by attempts

    def success(self, h: TargetHealth, admission: Admission) -> None:
        """An answer: batched, except a probe's (its verdict must reach every replica now)."""
        if admission == "probe":
            self._spawn(self._report_ok(h, probe=True))
            return
        key = (h.target.provider, h.target.model)
        self._successes[key] = self._successes.get(key, 0) + 1

    def failure(self, h: TargetHealth, admission: Admission, kind: str) -> asyncio.Task[None] | None:
        """A failure counted in Redis; the attempt loop waits for the returned task. While Redis
        is down the report is still tried, in the background: nobody waits for it."""
        task = self._spawn(self._report_failure(h, admission == "probe", kind))
        return task if self.up else None

    async def claim_probe(self, h: TargetHealth) -> bool:
        """Whether this replica may send the one recovery probe (Redis down: yes, locally)."""
        if not self.up:
            return True
        out = await self._call(self._probe, self._keys(h)[::-1], [int(self._cfg.cooldown_s * 1000) or 1000])
        if out is None:
            return True
        if int(out) == 0:
            return True
        h.breaker.force_open(int(out) / 1000.0)
        return False

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)
        return task

    async def _report_failure(self, h: TargetHealth, probe: bool, kind: str) -> None:
        cfg = self._cfg
        args = [
            self._channel, cfg.window, cfg.failures, cfg.error_ratio or 0, int(cfg.cooldown_s * 1000),
            int(probe), kind, self._name(h),
        ]  # fmt: skip
        out = await self._call(self._fail, self._keys(h), args)
        if out:
            h.breaker.force_open(int(out) / 1000.0, as_kind(kind))

    async def _report_ok(self, h: TargetHealth, *, probe: bool, n: int = 0) -> None:
        lat = f"{h.latency_ms:.3f}" if h.latency_ms is not None else ""
        ttft = f"{h.ttft_ms:.3f}" if h.ttft_ms is not None else "-"
        args = [
            self._channel,
            self._cfg.window,
            n,
            int(probe),
            self._name(h),
            self._replica,
            lat,
            ttft,
            max(n, 1),
        ]
        await self._call(self._ok, self._keys(h), args)

    @staticmethod
    def _name(h: TargetHealth) -> str:
        return msgspec.json.encode([h.target.provider, h.target.model]).decode()

    # ------------------------------------------------------------------ background

    async def _subscribe(self) -> None:
        while not self._closing:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self._channel)
                while not self._closing:
                    # A bounded wait, so a silent channel is not mistaken for a dead socket.
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._apply(message["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError):
                self.up = False
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), self._timeout * 4)  # type: ignore[no-untyped-call]

    def _apply(self, data: bytes) -> None:
        with contextlib.suppress(ValueError, msgspec.DecodeError):
            verb, ms, name = data.decode().split(" ", 2)
            provider, model = msgspec.json.decode(name)
            h = self._board.find(provider, model)
            if h is None:
                return
            if verb == "open":
                h.breaker.force_open(int(ms) / 1000.0)
            elif verb == "close":
                h.breaker.force_close()

    async def _sync_forever(self) -> None:
        while not self._closing:
            await asyncio.sleep(self._sync_s)
            try:
                await self.sync()
            except asyncio.CancelledError:
                raise
            except Exception:  # a sync must never stop: the next one retries
                log.exception("shared health sync failed")

    async def sync(self) -> None:
        """Report batched successes and estimates; read back shared estimates and open breakers."""
        pending, self._successes = self._successes, {}
        healths = self._board.all()
        for h in healths:
            n = pending.get((h.target.provider, h.target.model), 0)
            if n:  # successes since the last sync (and the estimate they moved)
                await self._report_ok(h, probe=False, n=n)
        if not healths:
            return
        out = await self._call(self._read, [self._keys(h)[0] for h in healths], [])
        for h, (open_ms, lats) in zip(healths, out or (), strict=False):
            if int(open_ms) > 0 and h.breaker.state == "closed":
                h.breaker.force_open(int(open_ms) / 1000.0)
            _merge_latency(h, [x.decode() if isinstance(x, bytes) else str(x) for x in lats])


def _merge_latency(h: TargetHealth, entries: list[str]) -> None:
    """Every replica's estimate, averaged with their recent sample counts as weights."""
    total = lat = ttft = ttft_n = 0.0
    for entry in entries:
        parts = entry.split(" ")
        if len(parts) != 3:
            continue
        n = max(1.0, float(parts[2]))
        total += n
        lat += n * float(parts[0])
        if parts[1] != "-":
            ttft += n * float(parts[1])
            ttft_n += n
    if total:
        h.shared_latency(lat / total, ttft / ttft_n if ttft_n else None)


async def share_health(state_url: str, board: HealthBoard, cfg: BreakerConfig) -> SharedHealth | None:
    """Start sharing ``board`` when the state backend is Redis (None for in-memory state)."""
    if not state_url.startswith(("redis://", "rediss://", "unix://")):
        return None
    shared = SharedHealth(state_url, board, cfg)
    await shared.start()
    return shared


def as_kind(kind: str | None) -> ProviderErrorKind | None:
    """An error kind another replica sent, if it is one this build knows."""
    return cast("ProviderErrorKind", kind) if kind in PROVIDER_ERROR_KINDS else None
