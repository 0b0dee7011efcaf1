"""Budgets hold across replicas: three gateways on one Redis, concurrent traffic until the team's
budget refuses, and the ledgers' exact settled total exceeds the budget by at most one request."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import openai
import pytest

from sluice.testing.fake_openai import FakeOpenAI
from tests.conftest import require_service
from tests.e2e.gateway import Gateway, make_gateway

pytestmark = [pytest.mark.e2e, pytest.mark.redis]
REDIS_DB = 12
BUDGET = Decimal("0.0005")


@pytest.fixture
def replicas(tmp_path: Path, fake_upstream: FakeOpenAI) -> Iterator[list[Gateway]]:
    require_service("redis", 6379)
    import redis

    redis.Redis(port=6379, db=REDIS_DB).flushdb()
    gws = []
    key = None
    for i in range(3):
        workdir = tmp_path / f"r{i}"
        config = f"""
server: {{key_secret: env:SLUICE_TEST_ADMIN_KEY}}
store: {{url: "sqlite:///{tmp_path}/shared-keys.db", flush_interval_s: 0.05}}
state: {{url: "redis://127.0.0.1:6379/{REDIS_DB}"}}
providers:
  up: {{type: openai, base_url: "{fake_upstream.base_url}", api_key: env:SLUICE_TEST_UPSTREAM_KEY}}
models:
  gpt-4o-mini: {{targets: [{{provider: up, model: gpt-4o-mini}}]}}
teams:
  eng: {{budget: {{usd: {BUDGET}, period: monthly}}}}
"""
        g = make_gateway(workdir, config)
        if key is None:
            key = g.create_key("eng")
        else:
            g.keys["shared"] = key
        gws.append(g.start())
    yield gws
    for g in gws:
        g.stop()
    redis.Redis(port=6379, db=REDIS_DB).flushdb()


def test_three_replicas_never_overspend_a_team_budget(replicas: list[Gateway]) -> None:
    key = next(iter(replicas[0].keys.values()))
    clients = [openai.OpenAI(base_url=g.base_url + "/v1", api_key=key, max_retries=0) for g in replicas]
    refused = threading.Event()
    ok = [0]

    def worker(n: int) -> None:
        client = clients[n % 3]
        for i in range(400):
            try:
                client.chat.completions.create(
                    model="gpt-4o-mini", max_tokens=40,
                    messages=[{"role": "user", "content": f"worker {n} request {i} of the budget test"}],
                )  # fmt: skip
                ok[0] += 1
            except openai.RateLimitError:
                refused.set()
                return

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert refused.is_set(), "the budget was never reached"
    for g in replicas:
        g.stop()  # flushes every replica's records
    db = replicas[0].workdir.parent / "shared-keys.db"
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT cost_nusd FROM requests WHERE status = 200").fetchall()
    costs = [int(r[0]) for r in rows]
    assert len(costs) == ok[0] > 10
    spent = Decimal(sum(costs)).scaleb(-9)
    assert spent <= BUDGET + Decimal(max(costs)).scaleb(-9), (spent, BUDGET)
    assert spent > BUDGET / 2, "most of the budget was usable"
