"""Conversions between records and database rows, shared by both backends."""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sluice.store.records import KeyRecord, RequestRecord, SpendRow
from sluice.store.reports import TeamModelSpend


def key_to_row(key: KeyRecord, updated_at: float) -> tuple[Any, ...]:
    return (
        key.id, key.hash, key.prefix, key.team, key.user, key.name,
        json.dumps(list(key.models)) if key.models is not None else None,
        key.created_at, key.revoked_at, key.rpm, key.tpm, key.concurrent, key.budget_usd,
        key.budget_period, updated_at,
    )  # fmt: skip


def key_from_row(row: Sequence[Any]) -> KeyRecord:
    models = json.loads(row[6]) if row[6] is not None else None
    return KeyRecord(
        id=row[0], hash=row[1], prefix=row[2], team=row[3], user=row[4], name=row[5],
        models=tuple(models) if models is not None else None, created_at=row[7], revoked_at=row[8],
        rpm=row[9], tpm=row[10], concurrent=row[11], budget_usd=row[12], budget_period=row[13],
    )  # fmt: skip


#: A request record as the database row (columns in ``REQUEST_COLUMNS`` order).
RequestRow = tuple[Any, ...]


def team_model_spend(r: Sequence[Any]) -> TeamModelSpend:
    """A row of ``TEAM_MODEL_SPEND``."""
    return TeamModelSpend(r[0], r[1], int(r[2]), Decimal(int(r[3])).scaleb(-9), int(r[4] or 0))


def spend_row(r: Sequence[Any]) -> SpendRow:
    """A row of ``SELECT group, SPEND_AGGREGATES``."""
    return SpendRow(
        r[0],
        int(r[1]),
        int(r[2] or 0),
        int(r[3]),
        int(r[4]),
        Decimal(int(r[5])).scaleb(-9),
        int(r[6] or 0),
        float(r[7] or 0),
    )


def request_to_row(r: RequestRecord) -> RequestRow:
    # Spelled out (not dataclasses.astuple, which deep-copies): this runs for every request.
    return (
        r.id, r.ts, r.endpoint, r.key_id, r.team, r.user, json.dumps(r.tags) if r.tags else "[]",
        r.requested_model, r.served_model, r.provider, r.route, int(r.stream), r.status, r.error_source, r.error_kind,
        r.error_message, r.prompt_tokens, r.completion_tokens, r.cached_tokens, r.cache_write_tokens,
        r.reasoning_tokens, r.cost_usd, r.latency_ms, r.ttft_ms, r.attempts, r.attempts_detail, r.note,
        r.route_reason, r.shadow_of, r.comparison, r.cost_nusd, r.prices, int(r.cost_estimated),
        r.policy_version,
        r.guardrails, r.request_body, r.response_body,
        r.cache, r.saved_usd,
    )  # fmt: skip
