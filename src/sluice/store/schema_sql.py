"""Table definitions shared by the SQLite and PostgreSQL backends."""

from __future__ import annotations

from typing import Final

REQUEST_COLUMNS: Final = (
    "id", "ts", "endpoint", "key_id", "team", "user_id", "tags", "requested_model", "served_model",
    "provider", "route", "stream", "status", "error_source", "error_kind", "error_message",
    "prompt_tokens", "completion_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens",
    "cost_usd", "latency_ms", "ttft_ms", "attempts", "attempts_detail", "note", "route_reason",
    "shadow_of", "comparison", "cache", "saved_usd",
)  # fmt: skip

SHADOW_COLUMNS: Final = ("id", "ts", "route", "shadow_of", "status", "cost_usd", "comparison")

KEY_COLUMNS: Final = (
    "id", "hash", "prefix", "team", "user_id", "name", "models", "created_at", "revoked_at",
    "rpm", "tpm", "concurrent", "budget_usd", "budget_period", "updated_at",
)  # fmt: skip


def ddl(real: str, bigint: str) -> list[str]:
    return [
        f"""CREATE TABLE IF NOT EXISTS keys (
            id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, prefix TEXT NOT NULL, team TEXT NOT NULL,
            user_id TEXT, name TEXT, models TEXT, created_at {real} NOT NULL, revoked_at {real},
            rpm {bigint}, tpm {bigint}, concurrent {bigint}, budget_usd {real}, budget_period TEXT,
            updated_at {real} NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS requests (
            id TEXT PRIMARY KEY, ts {real} NOT NULL, endpoint TEXT NOT NULL, key_id TEXT, team TEXT,
            user_id TEXT, tags TEXT, requested_model TEXT, served_model TEXT, provider TEXT, route TEXT,
            stream INTEGER NOT NULL, status INTEGER NOT NULL, error_source TEXT, error_kind TEXT,
            error_message TEXT, prompt_tokens {bigint} NOT NULL, completion_tokens {bigint} NOT NULL,
            cached_tokens {bigint} NOT NULL, cache_write_tokens {bigint} NOT NULL,
            reasoning_tokens {bigint} NOT NULL, cost_usd {real}, latency_ms {real} NOT NULL,
            ttft_ms {real}, attempts INTEGER NOT NULL, attempts_detail TEXT, note TEXT,
            route_reason TEXT, shadow_of TEXT, comparison TEXT, cache TEXT, saved_usd {real})""",
        "CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts)",
        "CREATE INDEX IF NOT EXISTS requests_team_ts ON requests (team, ts)",
        "CREATE INDEX IF NOT EXISTS requests_key_ts ON requests (key_id, ts)",
    ]


def added_request_columns(real: str) -> list[tuple[str, str]]:
    """Columns added after the first release, as (name, type): added to an existing ``requests``
    table when the store opens. Append only."""
    return [("cache", "TEXT"), ("saved_usd", real)]


#: SQL expression for each spend grouping; ``day`` is filled in per dialect.
GROUP_COLUMNS: Final = {
    "team": "team",
    "key": "key_id",
    "user": "user_id",
    "model": "served_model",
    "provider": "provider",
}
