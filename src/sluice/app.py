"""The gateway's wiring: services built at start-up and torn down at shutdown, and the routes.
The middleware list and the route tables are read top to bottom here."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Protocol

import msgspec

from sluice.config.model import Config, ProviderConfig
from sluice.errors import ServiceUnavailable
from sluice.limits import Limiter, LogAlerts, WebhookAlerts, open_state
from sluice.limits.catalog import ConfigCatalog
from sluice.limits.model import LevelLimits
from sluice.limits.tokens import TokenCounter
from sluice.pipeline.accounting import Accounting
from sluice.pipeline.auth import KeyCache, make_authorize_middleware
from sluice.pipeline.core import compose
from sluice.pipeline.quotas import Quotas
from sluice.pricing import PriceBook
from sluice.providers.registry import create_adapter
from sluice.routing.router import Router, RouterHooks
from sluice.schema.context import RequestContext, Result
from sluice.server import admin_routes, anthropic_routes, openai_routes, responses_routes
from sluice.server.dispatch import Dispatcher, RouteTable
from sluice.server.services import Services
from sluice.store.base import StoreUnavailable, create_store, store_location
from sluice.store.keys import resolve_hmac_key
from sluice.store.responses import open_response_store
from sluice.store.sqlite import sqlite_path
from sluice.store.writer import RecordWriter
from sluice.transport.client import PoolSettings, Transport
from sluice.transport.webhook import Webhook

log = logging.getLogger("sluice")

#: ``base_url: builtin:demo`` points a provider at the in-process demo upstream.
DEMO_BASE_URL = "builtin:demo"


class DemoUpstream(Protocol):
    @property
    def base_url(self) -> str: ...

    async def stop(self) -> None: ...


def validate(config: Config) -> None:
    """Checks that need the provider registry (``sluice check-config`` runs these too)."""
    for name, provider in config.providers.items():
        create_adapter(name, provider)


def route_tables() -> list[RouteTable]:
    """Every route the gateway serves: one line per routes module. A table made with a dialect
    renders every error on that dialect's paths in its format; the rest answer in OpenAI's."""
    return [
        openai_routes.routes,
        anthropic_routes.routes,
        admin_routes.routes,
        responses_routes.routes,
    ]


def dispatcher() -> Dispatcher:
    return Dispatcher(*route_tables())


def _spool_path(config: Config) -> Path:
    if config.store.url.startswith("sqlite:") and sqlite_path(config.store.url) != ":memory:":
        return Path(sqlite_path(config.store.url) + ".spool.jsonl")
    return Path("sluice-records.spool.jsonl")


@asynccontextmanager
async def running(config: Config) -> AsyncIterator[Services]:
    """Everything the routes need, from start-up to a drained shutdown."""
    validate(config)
    demo: DemoUpstream | None = None
    providers: dict[str, ProviderConfig] = dict(config.providers)
    if any(p.base_url == DEMO_BASE_URL for p in providers.values()):
        demo = await _start_demo()
        providers = {
            n: msgspec.structs.replace(p, base_url=demo.base_url) if p.base_url == DEMO_BASE_URL else p
            for n, p in providers.items()
        }
    prices = PriceBook.load(config.prices)

    def max_output(model: str, provider_type: str = "anthropic") -> int | None:
        price = prices.lookup(model, provider_type)
        return price.max_output_tokens if price is not None else None

    adapters = {name: create_adapter(name, p, max_output) for name, p in providers.items()}
    transport = Transport()
    for name, p in providers.items():
        transport.configure(name, PoolSettings(p.max_connections, p.connect_timeout_s))
    store = create_store(config.store.url)
    try:
        await store.open()
    except StoreUnavailable as exc:
        raise ServiceUnavailable(f"cannot start: {exc}") from None
    log.info("database: %s", store_location(config.store.url))
    key_secret = config.server.key_secret.reveal() if config.server.key_secret else None
    hmac_key = resolve_hmac_key(config.store.url, key_secret)
    writer = RecordWriter(
        store, _spool_path(config), flush_interval_s=config.store.flush_interval_s,
        batch_size=config.store.batch_size, queue_size=config.store.queue_size,
    )  # fmt: skip
    await writer.start()
    responses = open_response_store(config.store.url, config.store.responses_retention_days)
    try:
        await responses.start()
    except StoreUnavailable as exc:
        raise ServiceUnavailable(f"cannot start: {exc}") from None
    keys = KeyCache(store, hmac_key, config.teams, config.store.key_refresh_s)
    await keys.start()
    accounting = Accounting(
        writer, prices, {n: a.type for n, a in adapters.items()}, log_access=config.logging.access_log
    )
    limiter, alerts = _limiter(config, transport)
    counter = TokenCounter()
    if _policy_counts_tokens(config):
        # Loaded up front when the policy needs token counts; otherwise on first need (a key
        # with a token limit or budget), off the event loop. Each encoding costs ~70 MB.
        await asyncio.get_running_loop().run_in_executor(None, counter.preload)
    quotas = Quotas(
        limiter, counter, ConfigCatalog(config.models, providers, prices),
        teams={n: LevelLimits(t.rate_limit, t.budget) for n, t in config.teams.items()},
        routes={r.name: r.rate_limit for r in config.routes if r.rate_limit is not None},
    )  # fmt: skip
    router = Router(
        config, adapters, transport, providers=providers, prices=prices, guard=quotas,
        hooks=RouterHooks(shadow_sink=accounting.finish),  # shadow calls get records of their own
    )  # fmt: skip

    async def terminal(ctx: RequestContext) -> Result:
        return await (router.chat(ctx) if ctx.endpoint == "chat" else router.embed(ctx))

    pipeline = compose(
        [
            accounting.middleware,  # outermost: records every outcome below it
            make_authorize_middleware(frozenset(config.models)),
            router.select,  # routes: (sets ctx.route, so the route's rate limit applies below)
            quotas,  # rate limits and budgets: reserve before, settle after
        ],
        terminal,
    )
    svc = Services(
        config=config, store=store, writer=writer, keys=keys, hmac_key=hmac_key, router=router,
        accounting=accounting, pipeline=pipeline, limiter=limiter, tokens=counter, started_at=int(time.time()),
        responses=responses,
    )  # fmt: skip
    try:
        yield svc
    finally:  # records are flushed however the server stops
        svc.draining = True
        await keys.stop()
        await router.aclose(timeout_s=config.server.shutdown_grace_s)  # shadow calls in flight
        await writer.close(timeout_s=config.server.shutdown_grace_s)
        await responses.close()
        await limiter.close()
        if isinstance(alerts, WebhookAlerts):
            await alerts.close()
        await transport.close()
        await store.close()
        if demo is not None:
            await demo.stop()
        log.info("stopped: %d request records written, %d spooled", writer.written, writer.spooled)


def _policy_counts_tokens(config: Config) -> bool:
    limits = [t.rate_limit for t in config.teams.values()] + list(config.limits.providers.values())
    limits.extend(r.rate_limit for r in config.routes)
    budgets = [t.budget for t in config.teams.values()]
    users = config.limits.users
    if users is not None:
        limits.append(users.rate_limit)
        budgets.append(users.budget)
    return any(r is not None and r.tpm is not None for r in limits) or any(b is not None for b in budgets)


def _limiter(config: Config, transport: Transport) -> tuple[Limiter, LogAlerts | WebhookAlerts]:
    hook = config.alerts.webhook
    alerts: LogAlerts | WebhookAlerts = LogAlerts()
    if hook is not None:
        alerts = WebhookAlerts(
            Webhook(transport, "alerts", hook.reveal(), timeout_s=config.alerts.timeout_s).post
        )
    return Limiter(open_state(config.state, config.limits), config.limits, alerts=alerts), alerts


async def _start_demo() -> DemoUpstream:
    """The built-in demo upstream, imported only when a policy asks for it (``builtin:demo``)."""
    try:
        from sluice.testing.fake_openai import FakeOpenAI
    except ImportError as exc:  # aiohttp is not a dependency of the gateway itself
        raise ServiceUnavailable(
            f"cannot start the built-in demo upstream ({exc.name} is not installed): "
            "pip install 'sluice-gateway[demo]', or point the provider at a real base_url"
        ) from None
    demo = await FakeOpenAI(label="[sluice demo upstream] ").start()
    log.warning("serving the built-in DEMO upstream at %s (echoes prompts; not a real model)", demo.base_url)
    return demo
