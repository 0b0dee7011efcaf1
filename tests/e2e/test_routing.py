"""Routing and resilience in the real gateway process, driven by the openai SDK, in front of a fake
upstream that fails on cue. Exact attempt counts come from the requests the fake recorded."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import pytest

from sluice.testing.fake_openai import FakeOpenAI
from tests.e2e.gateway import ADMIN_KEY, Gateway, make_gateway

pytestmark = pytest.mark.e2e
MSG = [{"role": "user", "content": "hello there"}]


def _config(workdir: Path, upstream: str) -> str:
    return f"""
server: {{admin_key: env:SLUICE_TEST_ADMIN_KEY, request_timeout_s: 20, shutdown_grace_s: 3}}
store: {{url: "sqlite:///{workdir}/sluice.db", flush_interval_s: 0.05, key_refresh_s: 0.2}}
providers:
  up:    {{type: openai, base_url: "{upstream}", api_key: env:SLUICE_TEST_UPSTREAM_KEY, timeout_s: 5}}
  quick: {{type: openai, base_url: "{upstream}", api_key: env:SLUICE_TEST_UPSTREAM_KEY, timeout_s: 0.5}}
routing:
  retry: {{retries: 1, backoff: {{base_s: 0.05, max_s: 0.2}}}}
  breaker: {{failures: 3, error_ratio: null, cooldown_s: 1}}
models:
  chat:    {{targets: [{{provider: up, model: r-a}}, {{provider: up, model: r-b}}]}}
  solo:    {{targets: [{{provider: up, model: r-solo}}]}}
  guarded: {{targets: [{{provider: up, model: r-brk}}, {{provider: up, model: r-backup}}]}}
  streamy: {{targets: [{{provider: quick, model: r-st}}, {{provider: up, model: r-st-b}}]}}
  mini:    {{targets: [{{provider: up, model: r-mini}}]}}
  big:     {{targets: [{{provider: up, model: r-big}}]}}
  main:    {{targets: [{{provider: up, model: r-main}}]}}
  cand:    {{targets: [{{provider: up, model: r-cand}}]}}
routes:
  - {{name: summaries, match: {{task: summarize}}, model: mini, fallback: [big]}}
  - {{name: billing, match: {{team: billing, model: chat}}, model: big, rate_limit: {{rpm: 100}}}}
  - {{name: eval, match: {{model: main}}, shadow: {{model: cand, percent: 100}}}}
  - {{name: tight, match: {{task: tight}}, rate_limit: {{rpm: 1}}}}
teams:
  eng: {{}}
  billing: {{}}
prices:
  r-main: {{input_per_mtok: 1.0, output_per_mtok: 2.0}}
  r-cand: {{input_per_mtok: 0.5, output_per_mtok: 1.0}}
"""


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(slow_s=1.0, stall_s=2.0) as f:
        yield f


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI) -> Iterator[Gateway]:
    workdir = tmp_path_factory.mktemp("routing")
    gateway = make_gateway(workdir, _config(workdir, fake.base_url))
    gateway.create_key("eng")
    gateway.create_key("billing")
    gateway.start()
    yield gateway
    gateway.stop()


def _client(gw: Gateway, team_index: int = 0) -> openai.OpenAI:
    key = list(gw.keys.values())[team_index]
    return openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0, timeout=15)


def _record(gw: Gateway, request_id: str) -> dict[str, Any]:
    for _ in range(100):
        conn = sqlite3.connect(gw.db_path)
        conn.row_factory = sqlite3.Row
        try:
            row = conn.execute("SELECT * FROM requests WHERE id = ?", (request_id,)).fetchone()
        finally:
            conn.close()
        if row is not None:
            return dict(row)
        time.sleep(0.05)
    raise AssertionError(f"no record for {request_id}")


def _health(gw: Gateway) -> dict[str, Any]:
    r = httpx.get(gw.base_url + "/admin/health", headers={"authorization": f"Bearer {ADMIN_KEY}"})
    assert r.status_code == 200
    return {f"{t['provider']}/{t['model']}": t for t in r.json()["targets"]}


def test_fallback_is_shown_in_headers_and_recorded(gw: Gateway, fake: FakeOpenAI) -> None:
    fake.script("r-a", [500])
    raw = _client(gw).chat.completions.with_raw_response.create(model="chat", messages=MSG)  # type: ignore[arg-type]
    assert raw.parse().choices[0].message.content == "echo: hello there"
    h = raw.headers
    assert (h["x-sluice-model"], h["x-sluice-provider"], h["x-sluice-attempts"]) == ("r-b", "up", "2")
    assert "x-sluice-route" not in h
    assert (fake.count("r-a"), fake.count("r-b")) == (1, 1)
    rec = _record(gw, h["x-request-id"])
    detail = json.loads(rec["attempts_detail"])
    assert [(a["model"], a["status"], a["error_kind"]) for a in detail] == [
        ("r-a", 500, "server"),
        ("r-b", 200, None),
    ]
    assert rec["route_reason"] == "no route matched: serving the requested model"
    assert rec["cost_nusd"] is None or rec["cost_nusd"] == detail[1]["cost_nusd"]


def test_routes_match_on_task_and_team(gw: Gateway) -> None:
    client = _client(gw)
    raw = client.chat.completions.with_raw_response.create(
        model="chat", messages=MSG, extra_headers={"x-sluice-task": "summarize"}
    )  # type: ignore[arg-type]
    assert (raw.headers["x-sluice-route"], raw.headers["x-sluice-model"]) == ("summaries", "r-mini")
    raw = client.chat.completions.with_raw_response.create(
        model="chat", messages=MSG, metadata={"task": "summarize"}
    )  # type: ignore[arg-type]
    assert raw.headers["x-sluice-route"] == "summaries"
    raw = _client(gw, 1).chat.completions.with_raw_response.create(model="chat", messages=MSG)  # type: ignore[arg-type]
    assert (raw.headers["x-sluice-route"], raw.headers["x-sluice-model"]) == ("billing", "r-big")
    rec = _record(gw, raw.headers["x-request-id"])
    assert rec["route"] == "billing" and "team=billing" in rec["route_reason"]


def test_route_rate_limit_applies(gw: Gateway) -> None:
    client = _client(gw)
    client.chat.completions.create(model="chat", messages=MSG, extra_headers={"x-sluice-task": "tight"})  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError, match="route tight"):
        client.chat.completions.create(model="chat", messages=MSG, extra_headers={"x-sluice-task": "tight"})  # type: ignore[arg-type]


def test_429_retry_after_is_honoured(gw: Gateway, fake: FakeOpenAI) -> None:
    fake.script("r-solo", ["429:1", "ok"])
    started = time.monotonic()
    raw = _client(gw).chat.completions.with_raw_response.create(model="solo", messages=MSG)  # type: ignore[arg-type]
    assert time.monotonic() - started >= 1.0, "waited the upstream's retry-after"
    assert raw.headers["x-sluice-attempts"] == "2" and fake.count("r-solo") == 2
    detail = json.loads(_record(gw, raw.headers["x-request-id"])["attempts_detail"])
    assert detail[1]["backoff_ms"] >= 990  # the backoff, then the rest of the retry-after


def test_non_retryable_error_is_returned_at_once(gw: Gateway, fake: FakeOpenAI) -> None:
    before = fake.count("r-b")
    fake.script("r-a", [422])
    with pytest.raises(openai.BadRequestError) as err:
        _client(gw).chat.completions.create(model="chat", messages=MSG)  # type: ignore[arg-type]
    assert err.value.response.headers["x-sluice-attempts"] == "1"
    assert fake.count("r-b") == before, "no fallback on a 422"


def test_breaker_opens_and_closes(gw: Gateway, fake: FakeOpenAI) -> None:
    client = _client(gw)
    fake.script("r-brk", [500, 500, 500])
    for _ in range(3):
        raw = client.chat.completions.with_raw_response.create(model="guarded", messages=MSG)  # type: ignore[arg-type]
        assert raw.headers["x-sluice-model"] == "r-backup"
    assert _health(gw)["up/r-brk"]["state"] == "open"
    raw = client.chat.completions.with_raw_response.create(model="guarded", messages=MSG)  # type: ignore[arg-type]
    assert raw.headers["x-sluice-attempts"] == "1" and fake.count("r-brk") == 3, "skipped while open"
    assert "circuit open" in _record(gw, raw.headers["x-request-id"])["route_reason"]
    time.sleep(1.1)
    raw = client.chat.completions.with_raw_response.create(model="guarded", messages=MSG)  # type: ignore[arg-type]
    assert raw.headers["x-sluice-model"] == "r-brk", "one probe after the cooldown"
    view = _health(gw)["up/r-brk"]
    assert view["state"] == "closed" and view["opened"] == 1 and view["in_flight"] == 0


def test_stream_fails_over_before_the_first_byte_only(gw: Gateway, fake: FakeOpenAI) -> None:
    client = _client(gw)
    fake.script("r-st", ["reset"])
    stream = client.chat.completions.create(model="streamy", messages=MSG, stream=True)  # type: ignore[arg-type]
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "echo: hello there"
    before = fake.count("r-st-b")
    fake.script("r-st", ["stall"])
    body = httpx.post(
        gw.base_url + "/v1/chat/completions",
        json={"model": "streamy", "messages": [{"role": "user", "content": "a b c d e"}], "stream": True},
        headers={"authorization": f"Bearer {next(iter(gw.keys.values()))}"},
        timeout=15,
    ).text
    assert body.startswith("data: ") and '"error"' in body and "[DONE]" not in body
    assert "stalled" in body and fake.count("r-st-b") == before, "never retried after the first byte"


def test_shadow_is_recorded_compared_and_reported(gw: Gateway, fake: FakeOpenAI) -> None:
    raw = _client(gw).chat.completions.with_raw_response.create(model="main", messages=MSG)  # type: ignore[arg-type]
    rid = raw.headers["x-request-id"]
    assert raw.headers["x-sluice-route"] == "eval" and raw.headers["x-sluice-model"] == "r-main"
    shadow = _record(gw, f"{rid}-shadow")
    assert shadow["shadow_of"] == rid and json.loads(shadow["tags"]) == ["shadow"]
    assert shadow["served_model"] == "r-cand" and shadow["cost_usd"] > 0
    cmp = json.loads(shadow["comparison"])
    assert cmp["similarity"] == 1.0 and cmp["primary"]["cost_usd"] > cmp["shadow"]["cost_usd"] > 0
    primary = _record(gw, rid)
    assert primary["cost_usd"] == pytest.approx(cmp["primary"]["cost_usd"]), (
        "the caller is not charged for the shadow"
    )
    out = gw.cli("shadow", "report", "--config", str(gw.config_path), "--json")
    [row] = json.loads(out.stdout)
    # grouped by the policy models (a failed call has no served model to group by)
    assert (row["route"], row["primary_model"], row["shadow_model"], row["calls"]) == (
        "eval",
        "main",
        "cand",
        1,
    )
    assert row["similarity"] == 1.0
    assert "eval" in gw.cli("shadow", "report", "--config", str(gw.config_path)).stdout


def test_admin_health_needs_the_admin_key(gw: Gateway) -> None:
    assert httpx.get(gw.base_url + "/admin/health").status_code == 401
    r = httpx.get(gw.base_url + "/admin/health", headers={"authorization": f"Bearer {ADMIN_KEY}"})
    body = r.json()
    assert {"targets", "retry_budget", "shadow_in_flight"} <= set(body)


def test_routes_explain_and_check_config(gw: Gateway, tmp_path: Path) -> None:
    out = gw.cli(
        "routes", "explain", "--config", str(gw.config_path), "--team", "billing", "--model", "chat", "--json"
    )
    result = json.loads(out.stdout)
    assert result["route"] == "billing" and result["rate_limit"] == {
        "rpm": 100,
        "tpm": None,
        "concurrent": None,
    }
    [plan] = result["plans"].values()
    assert [m["model"] for m in plan["models"]] == ["big"]
    text = gw.cli(
        "routes", "explain", "--config", str(gw.config_path), "--model", "chat", "--task", "summarize"
    ).stdout
    assert "route:      summaries" in text and "1. up/r-mini" in text and "2. up/r-big" in text
    bad = gw.config_path.read_text().replace("fallback: [big]", "fallback: [ghost]")
    path = tmp_path / "bad.yaml"
    path.write_text(bad)
    res = gw.cli("check-config", str(path), check=False)
    assert res.returncode == 1 and "unknown model 'ghost' - at `$.routes[0].fallback[0]`" in res.stderr
    assert "4 routes" in gw.cli("check-config", str(gw.config_path)).stdout
