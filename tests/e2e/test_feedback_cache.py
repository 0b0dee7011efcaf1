"""Negative feedback on an answer the cache holds evicts it: the next identical request goes
upstream again; positive feedback leaves it cached."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import openai
import pytest

from sluice.testing.fake_openai import FakeOpenAI
from tests.e2e.gateway import Gateway, make_gateway

pytestmark = pytest.mark.e2e


@pytest.fixture
def gw(tmp_path: Path, fake_upstream: FakeOpenAI) -> Iterator[Gateway]:
    config = f"""
store: {{url: "sqlite:///{tmp_path}/sluice.db", flush_interval_s: 0.05}}
providers:
  up: {{type: openai, base_url: "{fake_upstream.base_url}", api_key: env:SLUICE_TEST_UPSTREAM_KEY}}
models:
  gpt-4o-mini: {{targets: [{{provider: up, model: gpt-4o-mini}}]}}
routes:
  - {{name: cached, match: {{model: gpt-4o-mini}}, cache: {{ttl_s: 600}}}}
cache: {{backend: memory}}
feedback:
  metrics:
    helpful: {{type: boolean, optimize: max}}
teams: {{eng: {{}}}}
"""
    g = make_gateway(tmp_path, config)
    g.create_key("eng")
    g.start()
    yield g
    g.stop()


def _rate(gw: Gateway, key: str, request_id: str, value: bool) -> None:
    deadline = time.monotonic() + 10
    while True:  # the rated request's record is written in batches: it may take a moment
        r = httpx.post(gw.base_url + "/v1/feedback", headers={"authorization": f"Bearer {key}"},
                       json={"request_id": request_id, "metric": "helpful", "value": value})  # fmt: skip
        if r.status_code != 404 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert r.status_code == 200, r.text


def test_negative_feedback_evicts_the_cached_answer(gw: Gateway, fake_upstream: FakeOpenAI) -> None:
    key = next(iter(gw.keys.values()))
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0)
    msgs = [{"role": "user", "content": f"rate me {time.time()}"}]

    def ask() -> tuple[str, str]:
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=msgs)  # type: ignore[arg-type]
        return raw.headers["x-sluice-cache"], raw.headers["x-request-id"]

    before = fake_upstream.count("gpt-4o-mini")
    assert ask()[0] == "miss"
    outcome, hit_id = ask()
    assert outcome == "hit"
    _rate(gw, key, hit_id, True)  # a good answer stays cached
    assert ask()[0] == "hit"
    _rate(gw, key, hit_id, False)  # a bad one is evicted: asked again upstream
    assert ask()[0] == "miss"
    assert fake_upstream.count("gpt-4o-mini") == before + 2
