from __future__ import annotations

import json
import socket
from datetime import UTC, datetime
from decimal import Decimal

from aiohttp import web

from sluice.limits import BudgetAlert, WebhookAlerts
from sluice.transport.client import Transport
from sluice.transport.webhook import Webhook

ALERT = BudgetAlert(
    scope="team search",
    period="monthly",
    period_start=datetime(2026, 1, 1, tzinfo=UTC),
    resets_at=datetime(2026, 2, 1, tzinfo=UTC),
    threshold=0.8,
    limit_usd=Decimal(2000),
    spent_usd=Decimal("1600.5"),
)


async def test_webhook_post(caplog):
    received: list[dict[str, object]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        transport = Transport()
        sink = WebhookAlerts(Webhook(transport, "alerts", f"http://127.0.0.1:{port}/hook").post)
        sink.notify(ALERT)  # returns at once; the POST runs in the background
        await sink.close()
        await transport.close()
    finally:
        await runner.cleanup()
    assert sink.sent == 1
    [body] = received
    assert body["scope"] == "team search" and body["threshold"] == 0.8 and body["spent_usd"] == "1600.5"
    assert "80% threshold" in str(body["text"])
    assert "budget alert: team search has spent $1600.50 of its monthly $2000.00 budget" in caplog.text


async def test_webhook_failure_is_logged_not_raised(caplog):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    transport = Transport()
    sink = WebhookAlerts(
        Webhook(transport, "alerts", f"http://127.0.0.1:{port}/secret-token", timeout_s=1).post
    )
    sink.notify(ALERT)
    await sink.close()
    await transport.close()
    assert sink.failed == 1
    assert "webhook failed" in caplog.text and "secret-token" not in caplog.text
    assert json.loads(ALERT.to_json())["type"] == "budget_threshold"


async def test_webhook_refusing_status_counts_as_failed(caplog):
    async def hook(request: web.Request) -> web.Response:
        return web.Response(status=500)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    transport = Transport()
    try:
        sink = WebhookAlerts(Webhook(transport, "alerts", f"http://127.0.0.1:{port}/hook?token=s3cret").post)
        sink.notify(ALERT)
        await sink.close()
    finally:
        await transport.close()
        await runner.cleanup()
    assert (sink.sent, sink.failed) == (0, 1)
    assert "WebhookFailed" in caplog.text and "s3cret" not in caplog.text
