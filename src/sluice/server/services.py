"""What the route handlers need, assembled once at start-up by ``app.running``."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sluice.config.model import Config
from sluice.limits import Limiter
from sluice.limits.tokens import TokenCounter
from sluice.pipeline.accounting import Accounting
from sluice.pipeline.auth import KeyCache
from sluice.pipeline.cache import ResponseCache
from sluice.routing.router import Router
from sluice.schema.context import CallNext
from sluice.store.base import Store
from sluice.store.responses import ResponseStore
from sluice.store.writer import RecordWriter
from sluice.telemetry.workers import SnapshotPublisher


class PolicyControl(Protocol):
    """Hot reload, as the admin routes see it (``sluice.reloader.Reloader``)."""

    async def reload(self, source: str) -> tuple[bool, dict[str, Any]]: ...

    def view(self) -> dict[str, Any]: ...

    on_admin_reload: Callable[[], None] | None

    on_install: list[Callable[[Config], None]]


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
    cache: ResponseCache | None = None
    draining: bool = field(default=False)
    #: SIGTERM received: /readyz fails while requests are still served (``server.drain_s``).
    stopping: bool = False
    #: The version (file hash) of the policy new requests are served under.
    policy_version: str = "inline"
    reloader: PolicyControl | None = None
    #: The listener's TLS context (``server.tls``), whose certificate a reload replaces.
    tls_context: ssl.SSLContext | None = None
    #: Serves /metrics (every worker's counts merged).
    metrics: SnapshotPublisher | None = None
