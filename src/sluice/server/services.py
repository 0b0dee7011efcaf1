"""What the route handlers need, assembled once at start-up by ``app.running``."""

from __future__ import annotations

from dataclasses import dataclass, field

from sluice.config.model import Config
from sluice.limits import Limiter
from sluice.limits.tokens import TokenCounter
from sluice.pipeline.accounting import Accounting
from sluice.pipeline.auth import KeyCache
from sluice.routing.router import Router
from sluice.schema.context import CallNext
from sluice.store.base import Store
from sluice.store.responses import ResponseStore
from sluice.store.writer import RecordWriter


@dataclass(slots=True)
class Services:
    config: Config
    store: Store
    writer: RecordWriter
    keys: KeyCache
    hmac_key: bytes
    router: Router
    accounting: Accounting
    #: The composed middleware chain for chat and embeddings.
    pipeline: CallNext
    limiter: Limiter
    tokens: TokenCounter
    #: Stored Responses API answers (``previous_response_id``, ``GET /v1/responses/{id}``).
    responses: ResponseStore | None = None
    started_at: int = 0
    draining: bool = field(default=False)
