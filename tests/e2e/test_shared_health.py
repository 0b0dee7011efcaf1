"""Three gateway processes on one Redis share each target's health: when a target fails, the three
together send it no more requests than one replica's breaker threshold, and one probe (not one per
replica) tests its recovery."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
import openai
import pytest

from sluice.testing.fake_openai import FakeOpenAI
from tests.conftest import require_service
from tests.e2e.gateway import ADMIN_KEY, Gateway, make_gateway

pytestmark = pytest.mark.redis
FAILURES = 3
COOLDOWN_S = 2.0


def _config(workdir: Path, upstream: str, provider: str, model: str) -> str:
    return f"""
server: {{admin_key: env:SLUICE_TEST_ADMIN_KEY}}
store: {{url: "sqlite:///{workdir}/sluice.db", flush_interval_s: 0.05}}
state: {{url: "redis://127.0.0.1:6379/0"}}
providers:
  {provider}: {{type: openai, base_url: "{upstream}", api_key: env:SLUICE_TEST_UPSTREAM_KEY}}
models:
  flaky: {{targets: [{{provider: {provider}, model: {model}}}]}}
routing:
  retry: {{retries: 0}}
  breaker: {{failures: {FAILURES}, error_ratio: null, cooldown_s: {COOLDOWN_S}}}
teams: {{eng: {{}}}}
"""


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[list[Gateway], list[str], FakeOpenAI, str]]:
    require_service("redis", 6379)
    provider, model = f"p{uuid.uuid4().hex[:10]}", f"m{uuid.uuid4().hex[:10]}"  # keys of our own
    with FakeOpenAI() as fake:
        gws = [
            make_gateway(tmp_path / f"gw{i}", _config(tmp_path / f"gw{i}", fake.base_url, provider, model))
            for i in range(3)
        ]
        keys = [gw.create_key("eng") for gw in gws]
        for gw in gws:
            gw.start()
        try:
            yield gws, keys, fake, model
        finally:
            for gw in gws:
                gw.stop()
            import redis

            r = redis.Redis.from_url("redis://127.0.0.1:6379/0")
            r.delete(f"sluice:h:{provider}:{model}", f"sluice:h:{provider}:{model}:probe")


def _ask(gw: Gateway, key: str) -> int:
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0)
    try:
        client.chat.completions.create(model="flaky", messages=[{"role": "user", "content": "hi"}])
    except openai.APIStatusError as exc:
        return exc.status_code
    return 200


def _states(gws: list[Gateway]) -> list[str]:
    out = []
    for gw in gws:
        body = httpx.get(
            gw.base_url + "/admin/health", headers={"authorization": f"Bearer {ADMIN_KEY}"}
        ).json()
        [target] = body["targets"]
        out.append(target["state"])
    return out


def test_replicas_share_breakers_and_send_one_probe(
    replicas: tuple[list[Gateway], list[str], FakeOpenAI, str],
) -> None:
    gws, keys, fake, model = replicas
    fake.script(model, [500] * 1000)
    for i in range(15):  # round robin, as a load balancer would
        _ask(gws[i % 3], keys[i % 3])
        time.sleep(0.02)
    assert fake.count(model) <= FAILURES, f"{fake.count(model)} requests reached the failing target"
    assert _states(gws) == ["open"] * 3

    time.sleep(COOLDOWN_S + 0.3)
    before = fake.count(model)
    with ThreadPoolExecutor(9) as pool:  # every replica wants to probe at once
        list(pool.map(lambda i: _ask(gws[i % 3], keys[i % 3]), range(9)))
    assert fake.count(model) - before == 1, "a single probe tests recovery"
    assert _states(gws) == ["open"] * 3, "the failed probe opened every breaker again"

    fake.script(model, [])  # it recovers
    time.sleep(COOLDOWN_S + 0.3)
    assert _ask(gws[0], keys[0]) == 200
    time.sleep(0.5)
    assert _states(gws) == ["closed"] * 3, "the probe's success closed every replica's breaker"
    assert [_ask(gw, k) for gw, k in zip(gws, keys, strict=True)] == [200] * 3
