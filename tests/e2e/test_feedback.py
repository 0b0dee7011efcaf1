"""Feedback end to end: an answer is rated with the gateway key that asked for it, scoped to the
key's team, validated against the declared metrics, stored and reported."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import pytest

from sluice.testing.fake_openai import FakeOpenAI
from tests.e2e.gateway import ADMIN_KEY, Gateway, make_gateway


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    workdir: Path = tmp_path_factory.mktemp("feedback")
    with FakeOpenAI() as fake:
        gw = make_gateway(
            workdir,
            f"""
server: {{admin_key: env:SLUICE_TEST_ADMIN_KEY}}
store: {{url: "sqlite:///{workdir}/sluice.db", flush_interval_s: 0.05}}
providers:
  up: {{type: openai, base_url: "{fake.base_url}", api_key: env:SLUICE_TEST_UPSTREAM_KEY, labels: {{region: us}}}}
  local: {{type: openai, base_url: "{fake.base_url}", api_key: env:SLUICE_TEST_UPSTREAM_KEY,
          labels: {{region: eu, compliance: [self-hosted]}}}}
models:
  chat: {{targets: [{{provider: up, model: f-chat}}]}}
  assistant:
    strategy: adaptive
    adaptive: {{metric: helpful, min_samples: 5, min_share: 0.05, memory: 50}}
    targets: [{{provider: up, model: a-good}}, {{provider: local, model: a-bad}}]
routes:
  - {{name: support, match: {{tags: [support]}}, model: chat}}
teams: {{eng: {{}}, ops: {{}}}}
feedback:
  metrics:
    helpful: {{type: boolean, optimize: max}}
    rating: {{type: float, optimize: max, min: 1, max: 5}}
""",
        )
        gw.create_key("eng")
        gw.create_key("ops")
        gw.start()
        yield gw
        gw.stop()


def _post(gw: Gateway, key: str, body: dict[str, object]) -> httpx.Response:
    return httpx.post(gw.base_url + "/v1/feedback", json=body, headers={"authorization": f"Bearer {key}"})


def test_feedback_is_scoped_validated_stored_and_reported(gw: Gateway) -> None:
    eng, ops = list(gw.keys.values())
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=eng, max_retries=0)
    ids = []
    for _ in range(4):
        raw = client.chat.completions.with_raw_response.create(
            model="chat",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-sluice-tags": "support"},
        )
        ids.append(raw.headers["x-request-id"])
    r = _post(gw, eng, {"request_id": ids[0], "metric": "helpful", "value": True, "tags": ["thumbs"]})
    assert r.status_code == 200, r.text
    assert r.json()["route"] == "support" and r.json()["target"] == "up/f-chat"
    for rid, v in zip(ids[1:], [False, True, True], strict=True):
        assert _post(gw, eng, {"request_id": rid, "metric": "helpful", "value": v}).status_code == 200
    assert _post(gw, eng, {"request_id": ids[0], "metric": "rating", "value": 4.5}).status_code == 200

    bad = _post(gw, eng, {"request_id": ids[0], "metric": "vibes", "value": 1})
    assert bad.status_code == 400 and "unknown metric 'vibes'" in bad.json()["error"]["message"]
    wrong = _post(gw, eng, {"request_id": ids[0], "metric": "helpful", "value": 3})
    assert wrong.status_code == 400 and "true or false" in wrong.json()["error"]["message"]
    out_of_range = _post(gw, eng, {"request_id": ids[0], "metric": "rating", "value": 9})
    assert out_of_range.status_code == 400
    foreign = _post(gw, ops, {"request_id": ids[0], "metric": "helpful", "value": False})
    unknown = _post(gw, ops, {"request_id": "req_nope", "metric": "helpful", "value": False})
    assert foreign.status_code == unknown.status_code == 404, "another team's id looks unknown"
    assert foreign.json()["error"]["message"].replace(ids[0], "X") == unknown.json()["error"][
        "message"
    ].replace("req_nope", "X")
    assert (
        _post(gw, "sk-wrong", {"request_id": ids[0], "metric": "helpful", "value": True}).status_code == 401
    )

    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    report = httpx.get(gw.base_url + "/admin/feedback?metric=helpful&by=route", headers=admin).json()
    [row] = report["groups"]
    assert (row["route"], row["count"], row["mean"]) == ("support", 4, 0.75)
    assert 0 < row["ci95_low"] < 0.75 < row["ci95_high"] <= 1
    out = gw.cli("feedback", "report", "--config", str(gw.config_path), "--by", "tag", "--json")
    tags = {(g["metric"], g["tag"]): g["count"] for g in json.loads(out.stdout)}
    assert (
        tags[("helpful", "support")] == 4
        and tags[("helpful", "thumbs")] == 1
        and tags[("rating", "support")] == 1
    )


def test_a_request_can_narrow_residency_and_gets_a_400_naming_what_nothing_meets(gw: Gateway) -> None:
    eng = next(iter(gw.keys.values()))
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=eng, max_retries=0)
    msg: Any = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model="chat", messages=msg, extra_headers={"x-sluice-require": "region=eu"}
        )
    assert "region in [eu] (required by the request)" in str(err.value)
    for _ in range(5):
        answer = client.chat.completions.create(
            model="assistant", messages=msg, extra_headers={"x-sluice-require": "compliance=self-hosted"}
        )
        assert answer.model == "a-bad", "only the self-hosted target may serve it"
    with pytest.raises(openai.BadRequestError, match="x-sluice-require"):
        client.chat.completions.create(
            model="chat", messages=msg, extra_headers={"x-sluice-require": "region"}
        )


def test_adaptive_shares_follow_the_feedback_and_explain_shows_them(gw: Gateway) -> None:
    eng = next(iter(gw.keys.values()))
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=eng, max_retries=0)
    msg: Any = [{"role": "user", "content": "hi"}]
    for _ in range(40):
        raw = client.chat.completions.with_raw_response.create(model="assistant", messages=msg)
        helpful = raw.parse().model == "a-good"  # the feedback client judges the answer
        r = _post(gw, eng, {"request_id": raw.headers["x-request-id"], "metric": "helpful", "value": helpful})
        assert r.status_code == 200
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    [view] = httpx.get(gw.base_url + "/admin/health", headers=admin).json()["adaptive"]
    shares = {t["model"]: t["share"] for t in view["targets"]}
    assert shares["a-good"] > 0.8 and shares["a-bad"] >= 0.02, view
    out = gw.cli("routes", "explain", "--config", str(gw.config_path), "--model", "assistant", "--json")
    [plan] = json.loads(out.stdout)["plans"].values()
    [m] = plan["models"]
    assert "Thompson sampling on 'helpful'" in m["order"]
    assert [t["model"] for t in m["targets"]] == ["a-good", "a-bad"] and m["targets"][0]["share"] > 0.8
