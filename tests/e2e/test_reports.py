"""Scheduled spend reports from the real gateway: the period just ended is POSTed to the alert
webhook once — not again by a second replica on the same database — and `sluice report` shows it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from sluice.testing.fake_openai import FakeOpenAI
from sluice.testing.loopback import LoopbackServer
from tests.e2e.gateway import make_gateway

pytestmark = pytest.mark.e2e


@pytest.fixture
def hook() -> Iterator[tuple[LoopbackServer, list[dict[str, object]]]]:
    received: list[dict[str, object]] = []

    async def receive(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=204)

    def app() -> web.Application:
        a = web.Application()
        a.router.add_post("/hook", receive)
        return a

    with LoopbackServer(app) as server:
        yield server, received


def test_daily_report_is_sent_once_and_shown(
    tmp_path: Path, fake_upstream: FakeOpenAI, hook: tuple[LoopbackServer, list[dict[str, object]]]
) -> None:
    server, received = hook
    config = f"""
store: {{url: "sqlite:///{tmp_path}/sluice.db", flush_interval_s: 0.05}}
providers:
  up: {{type: openai, base_url: "{fake_upstream.base_url}", api_key: env:SLUICE_TEST_UPSTREAM_KEY}}
models:
  gpt-4o-mini: {{targets: [{{provider: up, model: gpt-4o-mini}}]}}
teams: {{eng: {{}}}}
alerts: {{webhook: env:SLUICE_TEST_HOOK}}
reports: {{daily: {{to: webhook}}}}
"""
    first = make_gateway(tmp_path / "a", config)
    first.env["SLUICE_TEST_HOOK"] = f"{server.base_url}/hook"
    first.create_key("eng")
    first.start()
    second = make_gateway(tmp_path / "b", config)
    second.env["SLUICE_TEST_HOOK"] = f"{server.base_url}/hook"
    try:
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            time.sleep(0.05)
        second.start()
        time.sleep(1.0)
    finally:
        second.stop()
        first.stop()
    assert len(received) == 1, received
    assert received[0]["type"] == "spend_report" and received[0]["period"] == "daily"
    shown = first.cli("report", "--config", str(first.config_path), "--period", "day", "--json")
    assert json.loads(shown.stdout)["period"] == "daily"


def test_reports_need_the_webhook(tmp_path: Path, fake_upstream: FakeOpenAI) -> None:
    gw = make_gateway(tmp_path, "reports: {weekly: {to: webhook}}\n")
    out = gw.cli("check-config", str(gw.config_path), check=False)
    assert out.returncode != 0 and "needs alerts.webhook - at `$.reports.weekly.to`" in out.stderr
