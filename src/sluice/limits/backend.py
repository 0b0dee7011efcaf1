"""Choose the limit-state backend from ``state.url``."""

from __future__ import annotations

from sluice.config.limits import LimitsConfig
from sluice.config.model import StateConfig
from sluice.errors import ConfigError
from sluice.limits.memory import MemoryState
from sluice.limits.redis_state import RedisState
from sluice.limits.resilient import ResilientState
from sluice.limits.state import LimitState


def open_state(state: StateConfig, limits: LimitsConfig | None = None) -> LimitState:
    """``memory://`` → in-process state; ``redis://`` / ``rediss://`` / ``unix://`` → Redis with the
    configured outage behaviour. Creating it does no I/O (the first request connects)."""
    cfg = limits or LimitsConfig()
    url = state.url
    if url.startswith("memory:"):
        return MemoryState()
    if url.startswith(("redis://", "rediss://", "unix://")):
        shared = RedisState(url, timeout_s=cfg.state_timeout_s)
        return ResilientState(shared, state.on_outage, retry_s=cfg.state_retry_s)
    raise ConfigError(f"state.url must be memory:// or redis://host:port/db, not {url.split(':', 1)[0]}:...")
