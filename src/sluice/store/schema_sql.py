"""Table definitions shared by the SQLite and PostgreSQL backends."""

from __future__ import annotations

from typing import Final

from sluice.store.feedback import FEEDBACK_INDEX, feedback_ddl

REQUEST_COLUMNS: Final = (
    "id", "ts", "endpoint", "key_id", "team", "user_id", "tags", "requested_model", "served_model",
    "provider", "route", "stream", "status", "error_source", "error_kind", "error_message",
    "prompt_tokens", "completion_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens",
    "cost_usd", "latency_ms", "ttft_ms", "attempts", "attempts_detail", "note", "route_reason",
    "shadow_of", "comparison", "cost_nusd", "prices", "cost_estimated", "policy_version",
    "guardrails", "request_body", "response_body",
    "cache", "saved_usd",
)  # fmt: skip

LEDGER_COLUMNS: Final = ("id", "ts", "team", "key_id", "shadow_of", "status", "attempts_detail")

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
            route_reason TEXT, shadow_of TEXT, comparison TEXT, cost_nusd {bigint}, prices TEXT,
            cost_estimated INTEGER NOT NULL DEFAULT 0, policy_version TEXT, guardrails TEXT, request_body TEXT,
            response_body TEXT, cache TEXT, saved_usd {real})""",
        "CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts)",
        f"CREATE TABLE IF NOT EXISTS report_runs (key TEXT PRIMARY KEY, ts {real} NOT NULL)",
        "CREATE INDEX IF NOT EXISTS requests_team_ts ON requests (team, ts)",
        "CREATE INDEX IF NOT EXISTS requests_key_ts ON requests (key_id, ts)",
        feedback_ddl(real),
        FEEDBACK_INDEX,
    ]


#: What a spend report sums per group. Costs are summed as integers (nano-USD): exact.
SPEND_AGGREGATES: Final = (
    "count(*), sum(CASE WHEN status >= 400 THEN 1 ELSE 0 END), coalesce(sum(prompt_tokens), 0), "
    "coalesce(sum(completion_tokens), 0), coalesce(sum(cost_nusd), 0), "
    "sum(CASE WHEN cost_nusd IS NULL AND prompt_tokens + completion_tokens > 0 THEN 1 ELSE 0 END), "
    "coalesce(sum(saved_usd), 0)"
)

#: Spend per team and served model in a time range (scheduled reports).
TEAM_MODEL_SPEND: Final = (
    "SELECT team, served_model, count(*), coalesce(sum(cost_nusd), 0), "
    "sum(CASE WHEN cost_nusd IS NULL AND prompt_tokens + completion_tokens > 0 THEN 1 ELSE 0 END) "
    "FROM requests WHERE ts >= {p1} AND ts < {p2} AND shadow_of IS NULL GROUP BY team, served_model"
)

#: SQL expression for each spend grouping; ``day`` is filled in per dialect.
GROUP_COLUMNS: Final = {
    "team": "team",
    "key": "key_id",
    "user": "user_id",
    # The model asked for, and the one that answered where it was another ("a -> b"); a request
    # refused before any model answered stays under the model it asked for.
    "model": (
        "CASE WHEN served_model IS NULL OR served_model = requested_model THEN requested_model "
        "WHEN requested_model IS NULL THEN served_model ELSE requested_model || ' -> ' || served_model END"
    ),
    "provider": "provider",
}
