"""``GET /metrics``: the Prometheus text exposition, every worker's counts merged.

Behind the admin key when ``metrics.auth`` is true. Served on the gateway's port, and on
``metrics.listen`` when set (that listener serves only this table)."""

from __future__ import annotations

import asyncio
import hmac
import logging

from sluice.limits.model import Level
from sluice.server.dispatch import RouteTable
from sluice.server.services import Services
from sluice.server.wire import Request, Response
from sluice.telemetry.metrics import METRICS
from sluice.telemetry.prom import Snapshot

log = logging.getLogger("sluice.server")
routes = RouteTable()

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: A scrape never waits longer than this for the shared state's budget figures.
BUDGET_TIMEOUT_S = 1.0


def _authorised(request: Request) -> bool:
    admin = request.services.config.server.admin_key
    if admin is None:
        return False
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), admin.reveal().encode())


@routes.get("/metrics")
async def metrics(request: Request) -> Response:
    svc = request.services
    if svc.config.metrics.auth and not _authorised(request):
        return Response(
            401, b"/metrics needs 'Authorization: Bearer <admin key>' (metrics.auth is true)\n",
            content_type="text/plain; charset=utf-8", headers={"www-authenticate": "Bearer"},
        )  # fmt: skip
    if svc.metrics is None:
        return Response(503, b"metrics are not running\n", content_type="text/plain; charset=utf-8")
    text = await svc.metrics.exposition(await budget_families(svc))
    headers = {"x-sluice-metrics-workers": str(svc.metrics.workers_seen)}
    return Response(200, text.encode(), content_type=CONTENT_TYPE, headers=headers)


async def budget_families(svc: Services) -> Snapshot:
    """Each team budget's spend and limit in its current period. Read from the limit state (shared
    across workers already, so not summed); left out of the scrape if the state does not answer."""
    vocab = METRICS.vocab
    levels = [Level("team", n, budget=t.budget) for n, t in svc.config.teams.items() if t.budget is not None]
    if not levels:
        return {}
    try:
        rows = await asyncio.wait_for(svc.limiter.budget_report(levels), BUDGET_TIMEOUT_S)
    except Exception as exc:  # an outage of the state must not fail the scrape
        log.info("metrics: budget figures unavailable (%s)", type(exc).__name__)
        return {}
    used = [[[vocab.team(r.name)], float(r.spent_usd)] for r in rows]
    limit = [[[vocab.team(r.name)], float(r.limit_usd)] for r in rows]
    return {
        "sluice_budget_used_usd": {"type": "gauge", "help": "Spend in the budget's current period.",
                                   "labels": ["team"], "samples": used},
        "sluice_budget_limit_usd": {"type": "gauge", "help": "The budget for the current period.",
                                    "labels": ["team"], "samples": limit},
    }  # fmt: skip
