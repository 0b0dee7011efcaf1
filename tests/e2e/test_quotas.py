"""Rate limits and budgets enforced by the real gateway process — one process, and three
processes (and --workers 2) sharing one Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
import openai
import pytest

from sluice.testing.fake_openai import FakeOpenAI
from tests.conftest import require_service
from tests.e2e.gateway import ADMIN_KEY, Gateway, free_port, make_gateway, standard_config

pytestmark = pytest.mark.e2e
MSG = [{"role": "user", "content": "hello"}]

TEAMS = """
teams:
  eng: {}
  billing: {models: [gpt-4o-mini]}
  broke: {budget: {usd: 0.00005, period: daily}}
  capped: {rate_limit: {rpm: 2}}
"""


def _config(workdir: Path, upstream: str, state: str = "memory://") -> str:
    base = standard_config(workdir, upstream)
    head, _, tail = base.partition("teams:\n  eng: {}\n  billing: {models: [gpt-4o-mini]}\n")
    return head + TEAMS.strip("\n") + "\n" + tail + f"state:\n  url: {state}\n"


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory, fake_upstream: FakeOpenAI) -> Gateway:
    workdir = tmp_path_factory.mktemp("limited")
    gw = make_gateway(workdir, _config(workdir, fake_upstream.base_url))
    gw.start()
    yield gw  # type: ignore[misc]
    gw.stop()


def _client(gw: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0)


def test_key_rpm_refuses_with_headers_naming_the_limit(limited: Gateway) -> None:
    key = limited.create_key("eng", "--rpm", "3", "--name", "three-a-minute")
    client = _client(limited, key)
    for _ in range(3):
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSG)  # type: ignore[arg-type]
        assert "x-ratelimit-remaining-requests" in raw.headers
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG)  # type: ignore[arg-type]
    assert "three-a-minute" in err.value.message and "requests/min" in err.value.message
    headers = err.value.response.headers
    assert int(headers["retry-after"]) >= 1 and headers["x-ratelimit-limit-requests"] == "3"


def test_team_rate_limit_applies_to_all_its_keys(limited: Gateway) -> None:
    a, b = limited.create_key("capped"), limited.create_key("capped")
    _client(limited, a).chat.completions.create(model="gpt-4o-mini", messages=MSG)  # type: ignore[arg-type]
    _client(limited, b).chat.completions.create(model="gpt-4o-mini", messages=MSG)  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError, match="team capped"):
        _client(limited, a).chat.completions.create(model="gpt-4o-mini", messages=MSG)  # type: ignore[arg-type]


def test_exhausted_budget_is_a_hard_stop(limited: Gateway) -> None:
    client = _client(limited, limited.create_key("broke"))
    admitted = refused = 0
    for _ in range(40):
        try:
            client.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=10)  # type: ignore[arg-type]
            admitted += 1
        except openai.RateLimitError as exc:
            refused += 1
            assert exc.response.headers["x-should-retry"] == "false"
            assert "budget" in exc.message
    assert admitted >= 1 and refused >= 1
    report = httpx.get(
        limited.base_url + "/admin/budgets", headers={"authorization": f"Bearer {ADMIN_KEY}"}
    ).json()
    row = next(r for r in report["data"] if r["name"] == "broke")
    assert float(row["spent_usd"]) <= 0.00005 and float(row["reserved_usd"]) == 0
    out = limited.cli("budgets", "--config", str(limited.config_path), "--url", limited.base_url, "--json")
    assert any(r["name"] == "broke" for r in json.loads(out.stdout))


def test_three_gateways_share_one_limit(tmp_path: Path, fake_upstream: FakeOpenAI) -> None:
    require_service("redis", 6379)
    import redis

    redis.Redis(port=6379, db=9).flushdb()
    config = _config(tmp_path, fake_upstream.base_url, state="redis://127.0.0.1:6379/9")
    gateways = [make_gateway(tmp_path, config) for _ in range(3)]
    key = gateways[0].create_key("eng", "--rpm", "30")
    for gw in gateways:
        gw.start()
    try:

        def one(i: int) -> int:
            gw = gateways[i % 3]
            r = httpx.post(
                gw.base_url + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": MSG},
                headers={"authorization": f"Bearer {key}"}, timeout=10,
            )  # fmt: skip
            return r.status_code

        with ThreadPoolExecutor(12) as pool:
            codes = list(pool.map(one, range(150)))
        assert codes.count(200) == 30 and codes.count(429) == 120
    finally:
        for gw in gateways:
            gw.stop()


def test_workers_flag_needs_shared_state_and_serves_with_redis(
    tmp_path: Path, fake_upstream: FakeOpenAI
) -> None:
    gw = make_gateway(tmp_path, _config(tmp_path, fake_upstream.base_url))
    refused = gw.cli("serve", "--config", str(gw.config_path), "--workers", "2", check=False)
    assert refused.returncode != 0 and "redis" in refused.stderr
    require_service("redis", 6379)
    gw.config_path.write_text(_config(tmp_path, fake_upstream.base_url, state="redis://127.0.0.1:6379/9"))
    key = gw.create_key("eng")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sluice.cli", "serve", "--config", str(gw.config_path), "--port", str(port), "--workers", "2"],
        env=gw.env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
        for _ in range(10):
            client.chat.completions.create(model="gpt-4o-mini", messages=MSG)  # type: ignore[arg-type]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    assert os.path.exists(tmp_path / "sluice.db")


def test_provider_account_limit_falls_back_then_refuses(tmp_path: Path, fake_upstream: FakeOpenAI) -> None:
    config = (
        _config(tmp_path, fake_upstream.base_url)
        + "limits:\n  providers:\n    up: {rpm: 2}\n    slow: {rpm: 1}\n"
    )
    config = config.replace(
        "  down-then-up:",
        "  up-then-slow: {targets: [{provider: up, model: gpt-4o-mini}, {provider: slow, model: gpt-4o-mini}]}\n  down-then-up:",
    )
    gw = make_gateway(tmp_path, config)
    client = _client(gw, gw.create_key("eng"))
    gw.start()
    try:
        served = []
        for _ in range(3):
            raw = client.chat.completions.with_raw_response.create(model="up-then-slow", messages=MSG)  # type: ignore[arg-type]
            served.append(raw.headers["x-sluice-provider"])
        assert served == ["up", "up", "slow"], "the third request falls back when the first account is full"
        with pytest.raises(openai.RateLimitError, match="provider"):
            client.chat.completions.create(model="up-then-slow", messages=MSG)  # type: ignore[arg-type]
    finally:
        gw.stop()
