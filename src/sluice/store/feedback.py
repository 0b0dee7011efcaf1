"""The ``feedback`` table: one row per (request, metric), with the request's route, model, target
and tags copied in so reports need no join. A newer report on the same request and metric replaces
the older one (a caller changing its mind is not two votes).

The table is created with the rest of the schema (``schema_sql.ddl``); there is no migration
system yet, so an existing database gets it on its next start (``CREATE TABLE IF NOT EXISTS``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

FEEDBACK_COLUMNS: Final = (
    "id", "ts", "request_id", "team", "key_id", "metric", "value", "comment", "tags", "route", "model",
    "provider", "target_model",
)  # fmt: skip


def feedback_ddl(real: str) -> str:
    return f"""CREATE TABLE IF NOT EXISTS feedback (
        id TEXT PRIMARY KEY, ts {real} NOT NULL, request_id TEXT NOT NULL, team TEXT, key_id TEXT,
        metric TEXT NOT NULL, value {real} NOT NULL, comment TEXT, tags TEXT, route TEXT, model TEXT,
        provider TEXT, target_model TEXT)"""


FEEDBACK_INDEX: Final = "CREATE INDEX IF NOT EXISTS feedback_metric_ts ON feedback (metric, ts)"

#: The request columns a feedback report copies: team first (who may rate it).
REQUEST_FACTS_SELECT: Final = (
    "SELECT team, route, requested_model, provider, served_model, tags FROM requests WHERE id = "
)


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What a feedback row copies from the request it rates."""

    team: str | None
    route: str | None
    model: str | None
    provider: str | None
    target_model: str | None
    tags: str | None


@dataclass(frozen=True, slots=True)
class FeedbackRow:
    id: str
    ts: float
    request_id: str
    team: str | None
    key_id: str | None
    metric: str
    #: Booleans are stored as 1.0 / 0.0.
    value: float
    comment: str | None
    #: JSON list: the request's tags and the report's own.
    tags: str
    route: str | None
    model: str | None
    provider: str | None
    target_model: str | None

    def as_tuple(self) -> tuple[object, ...]:
        return (
            self.id, self.ts, self.request_id, self.team, self.key_id, self.metric, self.value, self.comment,
            self.tags, self.route, self.model, self.provider, self.target_model,
        )  # fmt: skip
