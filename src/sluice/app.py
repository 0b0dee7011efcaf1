"""The gateway's wiring: services built at start-up and torn down at shutdown, and the routes.
The middleware list is read top to bottom here, in :func:`build_policy`.

Two lifetimes:

- :class:`Shared` lives from start to shutdown: the store and request log, key cache, upstream
  connections, limit state (Redis or memory), token counter. State that must survive a policy
  reload (counters, cache entries, breakers) lives here or is carried over from ``previous``.
- :class:`Policy` is everything :func:`build_policy` makes from one policy file: adapters, router,
  quotas, accounting, and the composed middleware chain. A reload builds a new one whole (it may
  fail: nothing is swapped then) and :func:`install` swaps it in at once; requests in flight keep
  the chain they started with. A new middleware is one line in the list, plus, if it needs
  per-policy objects, their construction in ``build_policy`` (long-lived ones in ``Shared``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import msgspec

from sluice.boot import (
    DEMO_BASE_URL,
    DemoUpstream,
    file_version,
    policy_counts_tokens,
    start_demo,
    start_writer,
)  # fmt: skip
from sluice.config.model import Config, ProviderConfig
from sluice.errors import ServiceUnavailable
from sluice.limits import Limiter, LimitState, LogAlerts, WebhookAlerts, open_state
from sluice.limits.catalog import ConfigCatalog
from sluice.limits.model import LevelLimits
from sluice.limits.tokens import TokenCounter
from sluice.pipeline.accounting import Accounting
from sluice.pipeline.auth import KeyCache, make_authorize_middleware
from sluice.pipeline.cache import ResponseCache
from sluice.pipeline.cache_setup import check_embedder, open_cache
from sluice.pipeline.core import compose
from sluice.pipeline.guardrails import Guardrails, transport_post
from sluice.pipeline.quotas import Quotas
from sluice.pricing import PriceBook
from sluice.providers.registry import create_adapter
from sluice.reloader import Reloader
from sluice.routing.adaptive import AdaptiveSync
from sluice.routing.health import HealthBoard
from sluice.routing.router import Router, RouterHooks
from sluice.routing.shared_health import SharedHealth, share_health
from sluice.schema.context import CallNext, RequestContext, Result
from sluice.server import (
    admin_routes,
    anthropic_routes,
    cache_routes,
    console_routes,
    feedback_routes,
    insight_routes,
    manage_routes,
    metrics_routes,
    openai_routes,
    ops_routes,
    responses_routes,
    stats_routes,
)
from sluice.server.dispatch import Dispatcher, RouteTable
from sluice.server.services import Services
from sluice.server.tls import server_context
from sluice.store.base import Store, StoreUnavailable, create_store, store_location
from sluice.store.keys import resolve_hmac_key
from sluice.store.reports import ReportScheduler
from sluice.store.responses import open_response_store
from sluice.store.retention import Upkeep
from sluice.store.writer import RecordWriter
from sluice.telemetry.wiring import bind_policy_metrics, start_metrics, start_tracing, stop_telemetry
from sluice.transport.client import PoolSettings, Transport
from sluice.transport.webhook import Webhook

log = logging.getLogger("sluice")


def validate(config: Config) -> None:
    """Checks that need the provider registry or files (``sluice check-config`` and every
    reload run these too)."""
    for name, provider in config.providers.items():
        create_adapter(name, provider)
    if config.server.tls is not None:
        server_context(config.server.tls)  # the certificate and key load, and match
    check_embedder(config.cache, config.routes)


def route_tables() -> list[RouteTable]:
    """Every route the gateway serves: one line per routes module. A table made with a dialect
    renders every error on that dialect's paths in its format; the rest answer in OpenAI's."""
    return [
        openai_routes.routes,
        anthropic_routes.routes,
        admin_routes.routes,
        cache_routes.routes,
        ops_routes.routes,
        feedback_routes.routes,
        metrics_routes.routes,
        stats_routes.routes,
        manage_routes.routes,
        insight_routes.routes,
        console_routes.routes,
        responses_routes.routes,
    ]


def dispatcher() -> Dispatcher:
    return Dispatcher(*route_tables())


@dataclass(slots=True)
class Shared:
    """What outlives a policy reload: connections, the request log, the limit and breaker state."""

    store: Store
    writer: RecordWriter
    keys: KeyCache
    transport: Transport
    state: LimitState
    tokens: TokenCounter
    demo: DemoUpstream | None = None


@dataclass(slots=True)
class Policy:
    """Everything built from one policy file: swapped whole by a reload. A request keeps the
    policy it started with (the pipeline's middlewares hold it), so in-flight requests finish on it."""

    config: Config
    version: str
    router: Router
    accounting: Accounting
    limiter: Limiter
    alerts: LogAlerts | WebhookAlerts
    pipeline: CallNext
    #: Breakers shared with the other replicas through Redis (None: in-memory state, or handed on
    #: to the policy that replaced this one with the same breakers).
    shared_health: SharedHealth | None = None
    #: Feedback statistics for ``adaptive`` models, re-read from the store.
    adaptive: AdaptiveSync | None = None
    reports: ReportScheduler | None = None
    #: The response cache (its entries live in Redis with that backend; in memory, per policy).
    cache: ResponseCache | None = None
    #: Binds the metrics' label vocabulary and scrape-time values to this policy (at install).
    bind_metrics: Callable[[], None] | None = None


async def build_policy(config: Config, version: str, shared: Shared, previous: Policy | None) -> Policy:
    """The per-policy wiring, and the middleware list, read top to bottom."""
    validate(config)
    providers = await _resolve_demo(config, shared)
    prices = PriceBook.load(config.prices)

    def max_output(model: str, provider_type: str = "anthropic") -> int | None:
        price = prices.lookup(model, provider_type)
        return price.max_output_tokens if price is not None else None

    adapters = {name: create_adapter(name, p, max_output) for name, p in providers.items()}
    for name, p in providers.items():
        shared.transport.configure(name, PoolSettings(p.max_connections, p.connect_timeout_s))
    accounting = Accounting(
        shared.writer, prices, {n: a.type for n, a in adapters.items()}, log_access=config.logging.access_log,
        policy_version=version,
    )  # fmt: skip
    limiter, alerts = _limiter(config, shared.state, shared.transport)
    start_tracing(config, {n: a.type for n, a in adapters.items()})
    if policy_counts_tokens(config):
        # Loaded up front when the policy needs token counts; otherwise on first need (a key
        # with a token limit or budget), off the event loop. Each encoding costs ~70 MB.
        await asyncio.get_running_loop().run_in_executor(None, shared.tokens.preload)
    quotas = Quotas(
        limiter, shared.tokens, ConfigCatalog(config.models, providers, prices),
        teams={n: LevelLimits(t.rate_limit, t.budget) for n, t in config.teams.items()},
        routes={r.name: r.rate_limit for r in config.routes if r.rate_limit is not None},
        max_n=config.server.max_n,
    )  # fmt: skip
    carried = _carried_health(config, previous)
    router = Router(
        config, adapters, shared.transport, providers=providers, prices=prices, guard=quotas,
        hooks=RouterHooks(shadow_sink=accounting.finish, health=carried),  # shadows get records of their own
    )  # fmt: skip
    adaptive = AdaptiveSync(shared.store, router.adaptive)  # feedback statistics, shared through the store
    await adaptive.start()

    guardrails = Guardrails(config, transport_post(shared.transport))
    cache = await open_cache(
        config, prices, {n: a.type for n, a in adapters.items()}, (router.embed, accounting),
        previous.cache if previous is not None else None,  # entries carry over a reload
    )  # fmt: skip

    cache = await open_cache(
        config, prices, {n: a.type for n, a in adapters.items()}, (router.embed, accounting),
        previous.cache if previous is not None else None,  # entries carry over a reload
    )  # fmt: skip

    async def terminal(ctx: RequestContext) -> Result:
        return await (router.chat(ctx) if ctx.endpoint == "chat" else router.embed(ctx))

    pipeline = compose(
        [
            accounting.middleware,  # outermost: records every outcome below it
            make_authorize_middleware(frozenset(config.models)),
            router.select,  # routes: (sets ctx.route, so the route's rate limit applies below)
            quotas,  # rate limits and budgets: reserve before, settle after
            guardrails.middleware,  # input checks before the cache and any upstream call; output checks
            cache,  # response cache: a hit answers here (quotas settle it at 0 tokens, $0)
        ],
        terminal,
    )
    return Policy(
        config, version, router, accounting, limiter, alerts, pipeline,
        shared_health=await _shared_health(config, router, previous, carried), adaptive=adaptive,
        reports=_reports(config, shared), cache=cache,
        bind_metrics=lambda: bind_policy_metrics(config, providers, writer=shared.writer, health=router.health),
    )  # fmt: skip


async def _shared_health(
    config: Config, router: Router, previous: Policy | None, carried: HealthBoard | None
) -> SharedHealth | None:
    """Breakers shared through Redis: the previous policy's sharing is handed on with its board."""
    if previous is not None and carried is not None and previous.shared_health is not None:
        handed, previous.shared_health = previous.shared_health, None
        return handed
    return await share_health(config.state.url, router.health, config.routing.breaker)


def _reports(config: Config, shared: Shared) -> ReportScheduler | None:
    """Scheduled spend reports (``reports:``), POSTed to ``alerts.webhook``; each period is claimed
    in the store before it is sent, so a reload (or another replica) never sends one twice."""
    hook = config.alerts.webhook
    if not config.reports.periods() or hook is None:
        return None
    post = Webhook(shared.transport, "reports", hook.reveal(), timeout_s=config.alerts.timeout_s).post
    scheduler = ReportScheduler(shared.store, post, config.reports.periods())
    scheduler.start()
    return scheduler


def _carried_health(config: Config, previous: Policy | None) -> HealthBoard | None:
    """Breakers and latencies carry over a reload unless their own settings changed."""
    if previous is None:
        return None
    old = previous.config.routing
    if (old.breaker, old.latency_alpha) != (config.routing.breaker, config.routing.latency_alpha):
        log.info("policy reload: breaker settings changed, breakers start afresh")
        return None
    return previous.router.health


async def _resolve_demo(config: Config, shared: Shared) -> dict[str, ProviderConfig]:
    providers: dict[str, ProviderConfig] = dict(config.providers)
    if not any(p.base_url == DEMO_BASE_URL for p in providers.values()):
        return providers
    if shared.demo is None:
        shared.demo = await start_demo()
    base = shared.demo.base_url
    return {n: msgspec.structs.replace(p, base_url=base) if p.base_url == DEMO_BASE_URL else p
            for n, p in providers.items()}  # fmt: skip


def install(svc: Services, policy: Policy) -> None:
    """Swap a policy in, all at once (no await: no request sees half of it)."""
    svc.config, svc.router, svc.accounting = policy.config, policy.router, policy.accounting
    svc.pipeline, svc.limiter, svc.policy_version = policy.pipeline, policy.limiter, policy.version
    svc.cache = policy.cache
    if policy.bind_metrics is not None:
        policy.bind_metrics()


async def retire(policy: Policy) -> None:
    if policy.cache is not None:
        await policy.cache.close()  # its pending writes (and their embeddings' records) first
    if policy.reports is not None:
        await policy.reports.close()
    await policy.router.aclose(timeout_s=policy.config.server.shutdown_grace_s)  # shadow calls in flight
    if policy.shared_health is not None:
        await policy.shared_health.close()
    if policy.adaptive is not None:
        await policy.adaptive.close()
    if isinstance(policy.alerts, WebhookAlerts):
        await policy.alerts.close()


@asynccontextmanager
async def running(config: Config, *, policy_path: Path | None = None) -> AsyncIterator[Services]:
    """Everything the routes need, from start-up to a drained shutdown."""
    validate(config)
    store = create_store(config.store.url)
    try:
        await store.open()  # migrates the schema first, under the store's lock
    except StoreUnavailable as exc:
        raise ServiceUnavailable(f"cannot start: {exc}") from None
    log.info("database: %s", store_location(config.store.url))
    key_secret = config.server.key_secret.reveal() if config.server.key_secret else None
    hmac_key = resolve_hmac_key(config.store.url, key_secret)
    writer = await start_writer(config, store)
    responses = open_response_store(config.store.url, config.store.responses_retention_days)
    try:
        await responses.start()
    except StoreUnavailable as exc:
        raise ServiceUnavailable(f"cannot start: {exc}") from None
    keys = KeyCache(store, hmac_key, config.teams, config.store.key_refresh_s)
    await keys.start()
    upkeep = Upkeep(store, config.store.retention_days)
    upkeep.start()
    shared = Shared(store, writer, keys, Transport(), open_state(config.state, config.limits), TokenCounter())
    version = await file_version(policy_path)
    policy = await build_policy(config, version, shared, None)
    svc = Services(
        config=config, store=store, writer=writer, keys=keys, hmac_key=hmac_key, router=policy.router,
        accounting=policy.accounting, pipeline=policy.pipeline, limiter=policy.limiter, tokens=shared.tokens,
        started_at=int(time.time()), policy_version=version, metrics=start_metrics(), responses=responses,
    )  # fmt: skip
    install(svc, policy)
    reloader = Reloader(
        svc, policy, policy_path, install=install, retire=retire,
        build=lambda cfg, ver, prev: build_policy(cfg, ver, shared, prev),
    )  # fmt: skip
    svc.reloader = reloader
    if config.server.watch_policy:
        reloader.watch()
    try:
        yield svc
    finally:  # records are flushed however the server stops
        svc.draining = True
        await reloader.stop()  # closes the policies a reload replaced
        await upkeep.stop()
        await keys.stop()
        await retire(reloader.policy)
        await writer.close(timeout_s=config.server.shutdown_grace_s)
        await responses.close()
        await stop_telemetry(svc.metrics)
        await shared.state.close()
        await shared.transport.close()
        await store.close()
        if shared.demo is not None:
            await shared.demo.stop()
        log.info("stopped: %d request records written, %d spooled", writer.written, writer.spooled)


def _limiter(
    config: Config, state: LimitState, transport: Transport
) -> tuple[Limiter, LogAlerts | WebhookAlerts]:
    """A policy's limiter over the shared state: counters are keyed by names, so the limits of
    the teams, keys and routes that remain carry over a reload. Alerts go through the transport."""
    hook = config.alerts.webhook
    alerts: LogAlerts | WebhookAlerts = LogAlerts()
    if hook is not None:
        alerts = WebhookAlerts(
            Webhook(transport, "alerts", hook.reveal(), timeout_s=config.alerts.timeout_s).post
        )
    return Limiter(state, config.limits, alerts=alerts), alerts
