"""/metrics counts what the cache and the guardrails did: a miss then a hit, and a block."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import openai
import pytest

from sluice.testing.fake_openai import FakeOpenAI
from tests.e2e.gateway import Gateway, make_gateway
from tests.telemetry.promtext import parse, value

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
  - {{name: cached, match: {{model: gpt-4o-mini}}, cache: {{ttl_s: 600}}, guardrails: [no-secrets]}}
guardrails:
  no-secrets: {{type: secrets, action: block, on: [input]}}
cache: {{backend: memory}}
teams: {{eng: {{}}}}
"""
    g = make_gateway(tmp_path, config)
    g.create_key("eng")
    g.start()
    yield g
    g.stop()


def test_cache_lookups_and_guardrail_verdicts_are_counted(gw: Gateway) -> None:
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=next(iter(gw.keys.values())), max_retries=0)
    msgs = [{"role": "user", "content": "what is the capital of France?"}]
    for _ in range(2):
        client.chat.completions.create(model="gpt-4o-mini", messages=msgs)  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "use sk-proj-" + "a1B2c3D4e5F6g7H8i9J0" * 3}],
        )
    samples = parse(httpx.get(gw.base_url + "/metrics", timeout=5).text)
    assert value(samples, "sluice_cache_lookups_total", route="cached", outcome="miss") == 1
    assert value(samples, "sluice_cache_lookups_total", route="cached", outcome="hit") == 1
    assert (
        value(
            samples, "sluice_guardrail_verdicts_total", guardrail="no-secrets", stage="input", verdict="block"
        )
        == 1
    )


def test_policy_reloads_are_counted_by_outcome_and_cached_answers_carry_over(gw: Gateway) -> None:
    import signal
    import time

    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=next(iter(gw.keys.values())), max_retries=0)
    msgs = [{"role": "user", "content": "cached across a reload?"}]

    def ask() -> str:
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=msgs)  # type: ignore[arg-type]
        return str(raw.headers["x-sluice-cache"])

    assert ask() == "miss"
    good = gw.config_path.read_text()
    assert gw.proc is not None
    gw.config_path.write_text(good + "\nnot_a_key: 1\n")  # refused: an unknown key

    def count(outcome: str) -> float:
        text = httpx.get(gw.base_url + "/metrics", timeout=5).text
        return value(parse(text), "sluice_policy_reloads_total", outcome=outcome)

    gw.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while count("refused") < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert count("refused") == 1
    gw.config_path.write_text(good.replace("ttl_s: 600", "ttl_s: 300"))
    gw.proc.send_signal(signal.SIGHUP)
    while count("applied") < 1 and time.monotonic() < deadline + 10:
        time.sleep(0.05)
    assert count("applied") == 1 and count("refused") == 1
    assert ask() == "hit", "the route's cache key is unchanged: its entry outlives the reload"
