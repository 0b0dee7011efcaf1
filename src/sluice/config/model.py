"""The typed, frozen policy model. Every section of the policy file is a Struct here.

Unknown keys are rejected (``forbid_unknown_fields``) so a typo fails at start with its path.
Secrets are written as ``env:NAME`` and are held in :class:`Secret`, whose repr never shows the value.
"""

from __future__ import annotations

import datetime
from typing import Annotated, Literal

import msgspec

from sluice.config.adaptive import AdaptiveConfig
from sluice.config.admin import AdminKeyConfig
from sluice.config.cache import CacheConfig
from sluice.config.feedback import FeedbackConfig
from sluice.config.guardrails import GuardrailConfig, PayloadMode
from sluice.config.limits import AlertsConfig, BudgetConfig, LimitsConfig, RateLimitConfig
from sluice.config.ops import TlsConfig
from sluice.config.reports import ReportsConfig
from sluice.config.residency import Labels, RequireSpec
from sluice.config.routing import RouteConfig, RoutingConfig, Strategy
from sluice.config.secret import Secret
from sluice.config.telemetry import MetricsConfig, TelemetryConfig

__all__ = ["Secret"]


class ServerConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 4000
    #: Bearer key for /admin/*. Without it the admin API answers 403 to everyone.
    admin_key: Secret | None = None
    #: More admin keys, each with a name and a role (config/admin.py).
    admin_keys: list[AdminKeyConfig] = msgspec.field(default_factory=list)
    #: HMAC key for hashing gateway keys. Without it a random one is kept in a 0600 file next to a
    #: SQLite store; PostgreSQL stores require it (every replica must share it).
    key_secret: Secret | None = None
    max_body_bytes: int = 10 * 1024 * 1024
    request_timeout_s: float = 600.0
    workers: int = 1
    #: Seconds a SIGTERM waits for in-flight requests before closing them.
    shutdown_grace_s: float = 10.0
    #: An idle kept-alive client connection is closed after this long.
    keepalive_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 75.0
    #: A client silent this long in the middle of sending a request is disconnected.
    client_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    #: Most completions one chat request may ask for (``n``); each is reserved against limits.
    max_n: Annotated[int, msgspec.Meta(ge=1, le=128)] = 8
    #: On SIGTERM: fail /readyz and keep serving this long (for the load balancer to notice), then drain.
    drain_s: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    #: Reload the policy when its file changes (SIGHUP and POST /admin/reload always work).
    watch_policy: bool = False
    #: Serve HTTPS: PEM certificate chain and key files.
    tls: TlsConfig | None = None


class StoreConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    url: str = "sqlite:///./sluice.db"
    #: How often the background writer flushes request records (seconds).
    flush_interval_s: float = 0.25
    batch_size: int = 500
    #: Records held in memory while the database is slow or down; beyond it, the oldest wait.
    queue_size: int = 200_000
    #: How often each replica re-reads keys (revocations by another replica or the CLI).
    key_refresh_s: float = 1.0
    #: Stored Responses API answers (``store: true``) are kept this long, then purged.
    responses_retention_days: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    #: Append each finished record to a local journal before the answer is sent (a kill -9 loses none).
    journal: bool = True
    #: Days request records are kept (None: for ever). PostgreSQL drops whole day partitions.
    retention_days: Annotated[int, msgspec.Meta(ge=1)] | None = None


class OutageConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    budgets: Literal["fail_closed", "fail_open"] = "fail_closed"
    rate_limits: Literal["local", "fail_open", "fail_closed"] = "local"


class StateConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    url: str = "memory://"
    on_outage: OutageConfig = msgspec.field(default_factory=OutageConfig)


class ProviderConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    type: str
    api_key: Secret | None = None
    base_url: str | None = None
    api_version: str | None = None
    region: str | None = None
    #: Bedrock SigV4 credentials (else AWS_* environment variables; or api_key for a Bedrock API key).
    aws_access_key_id: Secret | None = None
    aws_secret_access_key: Secret | None = None
    aws_session_token: Secret | None = None
    #: Extra static headers sent upstream (e.g. an org id). Not for credentials: use api_key.
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    timeout_s: float = 600.0
    connect_timeout_s: float = 10.0
    max_connections: int = 1000
    #: Data residency / compliance labels matched by ``require:`` (not Bedrock's AWS ``region``).
    labels: Labels = msgspec.field(default_factory=dict)


class TargetConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    provider: str
    model: str
    #: Relative share of traffic under ``strategy: weighted`` (default 1); rejected otherwise.
    weight: float | None = None
    #: Per-attempt limit (else the provider's ``timeout_s``).
    timeout_s: float | None = None
    #: Context window in tokens (else the price book's, if it knows the model).
    max_input_tokens: int | None = None


class ModelConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    targets: list[TargetConfig]
    strategy: Strategy = "fallback"
    #: Models tried after this one's targets, in order (after a route's own ``fallback``).
    fallback: list[str] = msgspec.field(default_factory=list)
    owned_by: str = "sluice"
    #: The parameters of ``strategy: adaptive`` (required by it, refused without it).
    adaptive: AdaptiveConfig | None = None


class TeamConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    #: Models this team's keys may use; None means every configured model.
    models: list[str] | None = None
    rate_limit: RateLimitConfig | None = None
    budget: BudgetConfig | None = None
    #: Provider labels every target serving this team's requests must have (see ``residency``).
    require: RequireSpec = msgspec.field(default_factory=dict)


NonNegative = Annotated[float, msgspec.Meta(ge=0)]


class PriceConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One model's price in USD per million tokens (``per_request_usd``: USD per request)."""

    input_per_mtok: NonNegative
    output_per_mtok: NonNegative
    #: Cached input read (else the input price).
    cache_read_per_mtok: NonNegative | None = None
    #: Cache writes (Anthropic's 5-minute writes; else the input price).
    cache_write_per_mtok: NonNegative | None = None
    #: Anthropic's 1-hour cache writes (else ``cache_write_per_mtok``).
    cache_write_1h_per_mtok: NonNegative | None = None
    #: Reasoning (thinking) output tokens (else the output price).
    reasoning_per_mtok: NonNegative | None = None
    #: A surcharge on every request, whatever its tokens.
    per_request_usd: NonNegative | None = None
    #: The first day (UTC) this price is in force; None = always. A model may list several.
    effective_from: datetime.date | None = None


class LoggingConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    level: Literal["debug", "info", "warning", "error"] = "info"
    #: Log one JSON line per request (identity, model, tokens, cost, latency; never payloads).
    access_log: bool = False
    #: Request and response bodies in the request record: ``redacted`` after every PII and secrets
    #: detector (whatever the route's actions), ``full`` as sent and answered.
    payloads: PayloadMode = "none"


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    store: StoreConfig = msgspec.field(default_factory=StoreConfig)
    state: StateConfig = msgspec.field(default_factory=StateConfig)
    providers: dict[str, ProviderConfig] = msgspec.field(default_factory=dict)
    models: dict[str, ModelConfig] = msgspec.field(default_factory=dict)
    routes: list[RouteConfig] = msgspec.field(default_factory=list)
    routing: RoutingConfig = msgspec.field(default_factory=RoutingConfig)
    teams: dict[str, TeamConfig] = msgspec.field(default_factory=dict)
    #: Overrides and additions to the bundled price book; a list gives dated versions of a price.
    prices: dict[str, PriceConfig | list[PriceConfig]] = msgspec.field(default_factory=dict)
    logging: LoggingConfig = msgspec.field(default_factory=LoggingConfig)
    limits: LimitsConfig = msgspec.field(default_factory=LimitsConfig)
    alerts: AlertsConfig = msgspec.field(default_factory=AlertsConfig)
    reports: ReportsConfig = msgspec.field(default_factory=ReportsConfig)
    feedback: FeedbackConfig = msgspec.field(default_factory=FeedbackConfig)
    guardrails: dict[str, GuardrailConfig] = msgspec.field(default_factory=dict)
    metrics: MetricsConfig = msgspec.field(default_factory=MetricsConfig)
    telemetry: TelemetryConfig = msgspec.field(default_factory=TelemetryConfig)
    cache: CacheConfig = msgspec.field(default_factory=CacheConfig)
