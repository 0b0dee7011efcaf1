"""The store protocol and the factory that picks a backend from ``store.url``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sluice.errors import ConfigError
from sluice.store.records import GroupBy, KeyRecord, ShadowRow, SpendRow
from sluice.store.rows import RequestRow
from sluice.store.stats import LatencyRow, StatsBy


class Store(Protocol):
    """Durable state. Never called on a request's hot path: keys are cached in memory and
    request records are written in batches by :class:`sluice.store.writer.RecordWriter`.
    Every method raises ``StoreUnavailable`` when the database cannot be reached."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None: ...

    async def create_key(self, key: KeyRecord) -> None: ...

    async def list_keys(self, *, include_revoked: bool = True) -> list[KeyRecord]: ...

    async def revoke_key(self, key_id: str, at: float) -> bool: ...

    async def keys_version(self) -> tuple[float, int]:
        """A cheap fingerprint (latest change time, row count) to know when to reload keys."""
        ...

    async def insert_requests(self, rows: Sequence[RequestRow]) -> None: ...

    async def spend(self, group_by: GroupBy, since: float | None) -> list[SpendRow]: ...

    async def count_requests(self) -> int: ...

    async def shadow_rows(self, since: float | None) -> list[ShadowRow]:
        """Shadow calls recorded since ``since`` (oldest first)."""
        ...

    async def latency_stats(self, by: StatsBy, since: float | None) -> list[LatencyRow]:
        """Counts, errors by source and latency / TTFT percentiles per group (see store.stats)."""
        ...


class StoreUnavailable(Exception):
    """The database could not be reached or refused the operation."""


def create_store(url: str, key_secret: str | None = None) -> Store:
    if url.startswith("sqlite:"):
        from sluice.store.sqlite import SQLiteStore

        return SQLiteStore.from_url(url)
    if url.startswith(("postgres://", "postgresql://")):
        from sluice.store.postgres import PostgresStore

        return PostgresStore(url)
    raise ConfigError(f"unsupported store url scheme in {url.split(':', 1)[0]!r} - at `$.store.url`")
