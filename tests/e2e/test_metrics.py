"""/metrics on the real gateway: exact counts after a known mix of requests, promtool, auth, the
metrics-only listener, and --workers 2 summed."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx
import openai
import pytest

from sluice.testing.fake_openai import FakeOpenAI
from tests.conftest import require_service
from tests.e2e.gateway import ADMIN_KEY, Gateway, free_port, make_gateway, standard_config
from tests.telemetry.promtext import Samples, parse, total, value
from tests.telemetry.tools import promtool

pytestmark = pytest.mark.e2e
MSG = [{"role": "user", "content": "hello there"}]


def observed_config(workdir: Path, upstream: str, extra: str = "") -> str:
    base = standard_config(workdir, upstream)
    base = base.replace(
        "teams:\n  eng: {}\n",
        "teams:\n  eng: {budget: {usd: 100, period: monthly}}\n  capped: {rate_limit: {rpm: 2}}\n",
    )
    return base + extra


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, fake_upstream: FakeOpenAI) -> Gateway:
    workdir = tmp_path_factory.mktemp("metrics")
    metrics_port = free_port()
    g = make_gateway(workdir, observed_config(workdir, fake_upstream.base_url,
                                              f"metrics:\n  listen: 127.0.0.1:{metrics_port}\n"))  # fmt: skip
    g.env["METRICS_PORT"] = str(metrics_port)
    g.create_key("eng")
    g.create_key("capped")
    g.start()
    yield g  # type: ignore[misc]
    g.stop()


def scrape(url: str, **kw: str) -> str:
    r = httpx.get(url + "/metrics", timeout=5, headers=kw or None)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return r.text


def _drive(gw: Gateway) -> None:
    eng, capped = list(gw.keys.values())
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=eng, max_retries=0)
    for _ in range(3):
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG)  # type: ignore[arg-type]
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True)  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    client.embeddings.create(model="embed-small", input="hello")
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="fault-500", messages=MSG)  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="fault-429", messages=MSG)  # type: ignore[arg-type]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=gw.base_url + "/v1", api_key="sk-nope", max_retries=0).chat.completions.create(
            model="gpt-4o-mini",
            messages=MSG,  # type: ignore[arg-type]
        )
    limited = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=capped, max_retries=0)
    for _ in range(2):
        limited.chat.completions.create(model="gpt-4o-mini", messages=MSG)  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError):
        limited.chat.completions.create(model="gpt-4o-mini", messages=MSG)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def samples(gw: Gateway) -> Samples:
    _drive(gw)
    return parse(scrape(gw.base_url))


def _req(**labels: str) -> dict[str, str]:
    base = dict(endpoint="chat", route="none", model="gpt-4o-mini", served_model="gpt-4o-mini", provider="up",
                status_class="2xx", error_source="none", error_kind="none")  # fmt: skip
    return {**base, **labels}


def test_exact_request_counts_by_outcome(samples: Samples) -> None:
    s = samples
    assert value(s, "sluice_requests_total", **_req()) == 6  # 3 + 1 stream (eng), 2 (capped)
    assert value(s, "sluice_requests_total", **_req(endpoint="embeddings", model="embed-small",
                                                    served_model="text-embedding-3-small")) == 1  # fmt: skip
    failed = dict(served_model="none", provider="none", error_source="provider")
    assert (
        value(
            s,
            "sluice_requests_total",
            **_req(model="fault-500", status_class="5xx", error_kind="server", **failed),
        )
        == 1
    )
    assert (
        value(
            s,
            "sluice_requests_total",
            **_req(model="fault-429", status_class="4xx", error_kind="rate_limited", **failed),
        )
        == 1
    )
    assert value(s, "sluice_requests_total", **_req(model="none", served_model="none", provider="none",
                 status_class="4xx", error_source="client", error_kind="auth")) == 1  # fmt: skip
    assert value(s, "sluice_requests_total", **_req(served_model="none", provider="none", status_class="4xx",
                 error_source="gateway", error_kind="rate_limited")) == 1  # fmt: skip
    assert total(s, "sluice_requests_total") == 11
    assert value(s, "sluice_limit_refusals_total", level="team", limit="rpm") == 1


def test_upstream_attempts_retries_and_latency(samples: Samples) -> None:
    s = samples
    # fault-500 and fault-429 are each retried once (routing.retries defaults to 1)
    assert (
        value(
            s,
            "sluice_upstream_attempts_total",
            provider="up",
            model="fault-500",
            status_class="5xx",
            error_kind="server",
        )
        == 2
    )
    assert (
        value(
            s,
            "sluice_upstream_attempts_total",
            provider="up",
            model="fault-429",
            status_class="4xx",
            error_kind="rate_limited",
        )
        == 2
    )
    assert value(s, "sluice_retries_total", provider="up", model="fault-500") == 1
    assert (
        value(
            s,
            "sluice_upstream_attempts_total",
            provider="up",
            model="gpt-4o-mini",
            status_class="2xx",
            error_kind="none",
        )
        == 6
    )
    lat = dict(endpoint="chat", route="none", model="gpt-4o-mini", provider="up")
    assert value(s, "sluice_request_duration_seconds_count", **lat) == 6
    assert value(s, "sluice_time_to_first_token_seconds_count", **lat) == 1
    assert total(s, "sluice_gateway_overhead_seconds_count") == 11
    assert value(s, "sluice_breaker_state", provider="up", model="gpt-4o-mini", state="closed") == 1


def test_tokens_and_cost_match_the_request_log(gw: Gateway, samples: Samples) -> None:
    time.sleep(0.3)  # the log is flushed every 50 ms here
    with sqlite3.connect(gw.db_path) as db:
        p, c, cost = db.execute(
            "SELECT sum(prompt_tokens), sum(completion_tokens), sum(coalesce(cost_usd, 0)) FROM requests "
            "WHERE team = 'eng' AND served_model = 'gpt-4o-mini'"
        ).fetchone()
    labels = dict(team="eng", model="gpt-4o-mini", provider="up")
    assert p > 0 and value(samples, "sluice_tokens_total", type="input", **labels) == p
    assert value(samples, "sluice_tokens_total", type="output", **labels) == c
    assert value(samples, "sluice_cost_usd_total", **labels) == pytest.approx(cost)
    assert value(samples, "sluice_budget_limit_usd", team="eng") == 100
    assert value(samples, "sluice_request_log_queue_depth") >= 0


def test_no_secret_or_user_text_in_the_exposition(gw: Gateway, samples: Samples) -> None:
    text = scrape(gw.base_url)
    for secret in [*gw.keys.values(), "sk-nope", "hello there", ADMIN_KEY]:
        assert secret not in text


def test_promtool_check_metrics_passes(gw: Gateway, samples: Samples) -> None:
    out = promtool("check", "metrics", stdin=scrape(gw.base_url))
    assert out.returncode == 0, out.stdout + out.stderr


def test_metrics_listener_serves_metrics_only(gw: Gateway, samples: Samples) -> None:
    url = f"http://127.0.0.1:{gw.env['METRICS_PORT']}"
    assert total(parse(scrape(url)), "sluice_requests_total") >= 11
    assert httpx.post(url + "/v1/chat/completions", json={}, timeout=5).status_code == 404


def test_metrics_auth_needs_the_admin_key(tmp_path: Path, fake_upstream: FakeOpenAI) -> None:
    g = make_gateway(tmp_path, observed_config(tmp_path, fake_upstream.base_url, "metrics:\n  auth: true\n"))
    g.start()
    try:
        assert httpx.get(g.base_url + "/metrics", timeout=5).status_code == 401
        bad = httpx.get(g.base_url + "/metrics", headers={"authorization": "Bearer nope"}, timeout=5)
        assert bad.status_code == 401
        assert "sluice_requests_total" in scrape(g.base_url, authorization=f"Bearer {ADMIN_KEY}")
    finally:
        g.stop()


def test_workers_2_scrape_sums_every_worker(tmp_path: Path, fake_upstream: FakeOpenAI) -> None:
    require_service("redis", 6379)
    g = make_gateway(
        tmp_path,
        observed_config(tmp_path, fake_upstream.base_url) + "state:\n  url: redis://127.0.0.1:6379/13\n",
    )
    key = g.create_key("eng")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sluice.cli", "serve", "--config", str(g.config_path), "--port", str(port), "--workers", "2"],
        env=g.env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        body = {"model": "gpt-4o-mini", "messages": MSG}
        for _ in range(20):  # a new connection each: the kernel spreads them over both workers
            r = httpx.post(base + "/v1/chat/completions", json=body, timeout=10,
                           headers={"authorization": f"Bearer {key}", "connection": "close"})  # fmt: skip
            assert r.status_code == 200
        time.sleep(2.5)  # each worker publishes its snapshot once a second
        for _ in range(6):  # whichever worker answers, it reports both
            got = httpx.get(base + "/metrics", timeout=5, headers={"connection": "close"})
            assert got.headers["x-sluice-metrics-workers"] == "2"
            assert value(parse(got.text), "sluice_requests_total", **_req()) == 20
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_stats_cli_and_admin_stats_read_the_tails_from_the_log(gw: Gateway, samples: Samples) -> None:
    time.sleep(0.3)  # flushed every 50 ms
    out = gw.cli("stats", "--config", str(gw.config_path), "--by", "model", "--since", "1h", "--json")
    rows = {r["model"]: r for r in json.loads(out.stdout)}
    mini = rows["gpt-4o-mini"]
    assert mini["requests"] == 7 and mini["errors_by_source"] == {"provider": 0, "gateway": 1, "client": 0}
    assert mini["streamed_with_ttft"] == 1 and mini["ttft_ms"]["p50"] > 0
    assert 0 < mini["latency_ms"]["p50"] <= mini["latency_ms"]["p99"] <= mini["latency_ms"]["p999"]
    assert rows["fault-500"]["errors_by_source"]["provider"] == 1 and rows["fault-500"]["error_rate"] == 1.0
    assert rows[None]["errors_by_source"]["client"] == 1  # the bad key: no model read
    table = gw.cli("stats", "--config", str(gw.config_path), "--by", "provider").stdout
    assert "P999_MS" in table and "up" in table
    api = httpx.get(
        gw.base_url + "/admin/stats?by=model&since=1h",
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
        timeout=5,
    )
    assert (
        api.status_code == 200 and {r["model"]: r for r in api.json()["data"]}["gpt-4o-mini"]["requests"] == 7
    )
    assert httpx.get(gw.base_url + "/admin/stats", timeout=5).status_code == 401
    bad = httpx.get(
        gw.base_url + "/admin/stats?by=user", headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=5
    )
    assert bad.status_code == 400 and "by must be one of" in bad.text


def test_breaker_opening_is_counted_shown_and_logged_once(gw: Gateway, samples: Samples) -> None:
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=next(iter(gw.keys.values())), max_retries=0)
    for _ in range(4):  # 2 attempts each: the 5th consecutive failure opens the breaker
        with pytest.raises(openai.APIStatusError):
            client.chat.completions.create(model="fault-529", messages=MSG)  # type: ignore[arg-type]
    s = parse(scrape(gw.base_url))
    assert value(s, "sluice_breaker_state", provider="up", model="fault-529", state="open") == 1
    assert value(s, "sluice_breaker_transitions_total", provider="up", model="fault-529", state="open") == 1
    lines = [json.loads(x) for x in gw.log_path.read_text().splitlines()]
    opened = [x for x in lines if x["msg"] == "circuit breaker opened for up/fault-529"]
    assert len(opened) == 1 and opened[0]["level"] == "warning" and opened[0]["request_id"]
    assert opened[0]["last_error"] == "overloaded"
