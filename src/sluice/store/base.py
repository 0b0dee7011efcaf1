"""The store protocol and the factory that picks a backend from ``store.url``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from sluice.errors import ConfigError
from sluice.store.feedback import FeedbackRow, RequestFacts
from sluice.store.migrations import SchemaStatus
from sluice.store.records import GroupBy, KeyRecord, LedgerRow, ShadowRow, SpendRow
from sluice.store.reports import TeamModelSpend
from sluice.store.rows import RequestRow
from sluice.store.stats import LatencyRow, StatsBy


class Store(Protocol):
    """Durable state. Never called on a request's hot path: keys are cached in memory and
    request records are written in batches by :class:`sluice.store.writer.RecordWriter`.
    Every method raises ``StoreUnavailable`` when the database cannot be reached."""

    async def open(self, *, migrate: bool = True) -> None:
        """Connect; with ``migrate``, bring the schema up to date first (see ``store.migrations``)."""
        ...

    async def migrate(self) -> list[str]:
        """Apply pending schema steps under the store's migration lock; returns what was applied."""
        ...

    async def schema_status(self) -> SchemaStatus: ...

    async def prepare_partitions(self, now: float) -> None:
        """PostgreSQL: make the request table's day partitions for ``now`` and the days after."""
        ...

    async def purge_before(self, cutoff: float) -> int:
        """Retention: remove request records older than ``cutoff`` (epoch seconds)."""
        ...

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

    async def spend_by_team_model(self, start: float, end: float) -> list[TeamModelSpend]:
        """Each team's requests and exact cost per served model with ``start <= ts < end``."""
        ...

    async def claim_report(self, key: str, at: float) -> bool:
        """True for the one caller (of any replica) that claims the report ``key`` first."""
        ...

    async def unclaim_report(self, key: str) -> None: ...

    async def ledger_rows(
        self, since: float, until: float, after_id: str = "", limit: int = 10_000
    ) -> list[LedgerRow]:
        """Requests with ``since <= ts < until`` that billed an attempt, in id order after ``after_id``
        (page through with the last id of the previous page)."""
        ...

    async def request_facts(self, request_id: str) -> RequestFacts | None:
        """The team, route, model, target and tags of a recorded request (None: no such request)."""
        ...

    async def insert_feedback(self, row: FeedbackRow) -> None:
        """Store a feedback report, replacing an earlier one on the same request and metric."""
        ...

    async def feedback_rows(self, metric: str | None, since: float | None) -> list[FeedbackRow]: ...

    async def latency_stats(self, by: StatsBy, since: float | None) -> list[LatencyRow]:
        """Counts, errors by source and latency / TTFT percentiles per group (see store.stats)."""
        ...


class StoreUnavailable(Exception):
    """The database could not be reached or refused the operation."""


def store_location(url: str) -> str:
    """Where ``url`` points, for people: a SQLite file's absolute path (relative paths are
    resolved against the current directory, by every command alike), else the server and
    database, never the password."""
    if url.startswith("sqlite:"):
        from sluice.store.sqlite import sqlite_path

        path = sqlite_path(url)
        return path if path == ":memory:" else str(Path(path).resolve())
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"


def create_store(url: str) -> Store:
    if url.startswith("sqlite:"):
        from sluice.store.sqlite import SQLiteStore

        return SQLiteStore.from_url(url)
    if url.startswith(("postgres://", "postgresql://")):
        from sluice.store.postgres import PostgresStore

        return PostgresStore(url)
    raise ConfigError(f"unsupported store url scheme in {url.split(':', 1)[0]!r} - at `$.store.url`")
