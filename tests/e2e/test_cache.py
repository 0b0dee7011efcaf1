"""The response cache in the real gateway process, driven by the official SDKs. The fake
upstream's request count proves that a hit never went upstream."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2 as httpx
import openai
import pytest

from sluice.schema.embeddings import base64_to_floats
from sluice.testing.fake_openai import FakeOpenAI
from tests.e2e.gateway import ADMIN_KEY, Gateway, make_gateway, standard_config

pytestmark = pytest.mark.e2e

ROUTES = """
routes:
  - name: sensitive
    match: {team: billing}
    cache: {ttl_s: 0}
  - name: cached
    match: {model: [gpt-4o-mini, embed-small, parallel, fault-drop-stream, fault-stream-error, fault-500]}
    cache: {ttl_s: 600}
cache:
  max_bytes: 1048576
"""


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, upstream: FakeOpenAI) -> Iterator[Gateway]:
    workdir = tmp_path_factory.mktemp("cache")
    gateway = make_gateway(workdir, standard_config(workdir, upstream.base_url) + ROUTES)
    gateway.create_key("eng")
    gateway.create_key("billing")
    gateway.start()
    yield gateway
    gateway.stop()


def _key(gw: Gateway, n: int) -> str:
    return list(gw.keys.values())[n]


@pytest.fixture
def oai(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url + "/v1", api_key=_key(gw, 0), max_retries=0)


@pytest.fixture
def ant(gw: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.base_url, api_key=_key(gw, 0), max_retries=0)


def _msgs(text: str) -> Any:
    return [{"role": "user", "content": text}]


def _unique(name: str) -> str:
    return f"{name} {time.monotonic_ns()}"


def test_plain_miss_then_hit_never_goes_upstream(oai: openai.OpenAI, upstream: FakeOpenAI) -> None:
    prompt = _unique("what is a sluice")
    before = upstream.count("gpt-4o-mini")
    first = oai.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=_msgs(prompt))
    second = oai.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=_msgs(prompt))
    assert first.headers["x-sluice-cache"] == "miss" and second.headers["x-sluice-cache"] == "hit"
    assert int(second.headers["age"]) >= 0
    assert upstream.count("gpt-4o-mini") == before + 1
    a, b = first.parse(), second.parse()
    assert b.choices[0].message.content == a.choices[0].message.content == f"echo: {prompt}"
    assert b.choices[0].finish_reason == "stop" and b.usage is not None


def test_anything_that_changes_the_answer_misses(oai: openai.OpenAI, upstream: FakeOpenAI) -> None:
    prompt = _unique("vary me")
    before = upstream.count("gpt-4o-mini")
    variants: list[dict[str, Any]] = [
        {}, {"temperature": 0.2}, {"response_format": {"type": "json_object"}}, {"max_tokens": 50},
        {"extra_body": {"brand_new_param": 1}}, {"seed": 7},
    ]  # fmt: skip
    for v in variants:
        raw = oai.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=_msgs(prompt), **v)
        assert raw.headers["x-sluice-cache"] == "miss", v
    assert upstream.count("gpt-4o-mini") == before + len(variants)
    # ...and what cannot change it (user, metadata) still hits.
    raw = oai.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=_msgs(prompt), user="someone", metadata={"k": "v"}
    )
    assert raw.headers["x-sluice-cache"] == "hit"


def test_streamed_miss_then_plain_hit_and_stream_replay(oai: openai.OpenAI, upstream: FakeOpenAI) -> None:
    prompt = _unique("stream me please")
    before = upstream.count("gpt-4o-mini")
    with oai.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=_msgs(prompt), stream=True
    ) as resp:
        assert resp.headers["x-sluice-cache"] == "miss"
        streamed = "".join(c.choices[0].delta.content or "" for c in resp.parse() if c.choices)
    assert streamed == f"echo: {prompt}"
    time.sleep(0.05)
    plain = oai.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=_msgs(prompt))
    assert plain.headers["x-sluice-cache"] == "hit"
    assert plain.parse().choices[0].message.content == streamed
    # Replayed as a stream, with the usage chunk when asked.
    chunks = list(
        oai.chat.completions.create(
            model="gpt-4o-mini", messages=_msgs(prompt), stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == streamed
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert upstream.count("gpt-4o-mini") == before + 1


def test_plain_miss_then_streamed_hit_is_valid_sse(
    gw: Gateway, oai: openai.OpenAI, upstream: FakeOpenAI
) -> None:
    prompt = _unique("plain first")
    oai.chat.completions.create(model="gpt-4o-mini", messages=_msgs(prompt))
    before = upstream.count("gpt-4o-mini")
    body = {"model": "gpt-4o-mini", "messages": _msgs(prompt), "stream": True}
    r = httpx.post(
        gw.base_url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {_key(gw, 0)}"}
    )
    assert r.headers["x-sluice-cache"] == "hit" and r.headers["content-type"].startswith("text/event-stream")
    events = [e for e in r.text.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    payloads = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert all(isinstance(p["choices"], list) for p in payloads)
    assert "".join(p["choices"][0]["delta"].get("content") or "" for p in payloads) == f"echo: {prompt}"
    assert payloads[-1]["choices"][0]["finish_reason"] == "stop"
    assert not any("usage" in p and p["usage"] for p in payloads), "no usage chunk unless asked"
    assert upstream.count("gpt-4o-mini") == before


def test_tool_call_answers_replay_whole_and_streamed(oai: openai.OpenAI, upstream: FakeOpenAI) -> None:
    tools: Any = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    prompt = _unique("weather?")
    with oai.chat.completions.with_streaming_response.create(
        model="parallel", messages=_msgs(prompt), tools=tools, stream=True
    ) as resp:
        list(resp.parse())
    time.sleep(0.05)
    before = upstream.count("parallel-tools")
    hit = oai.chat.completions.with_raw_response.create(model="parallel", messages=_msgs(prompt), tools=tools)
    assert hit.headers["x-sluice-cache"] == "hit"
    calls = hit.parse().choices[0].message.tool_calls
    assert (
        calls is not None and len(calls) == 2 and json.loads(calls[1].function.arguments) == {"city": "Paris"}
    )
    assert hit.parse().choices[0].finish_reason == "tool_calls"
    assert upstream.count("parallel-tools") == before


def test_anthropic_sdk_hits_whole_and_streamed(ant: anthropic.Anthropic, upstream: FakeOpenAI) -> None:
    prompt = _unique("hello claude")
    before = upstream.count("gpt-4o-mini")
    first = ant.messages.with_raw_response.create(model="gpt-4o-mini", max_tokens=100, messages=_msgs(prompt))
    assert first.headers["x-sluice-cache"] == "miss"
    second = ant.messages.with_raw_response.create(
        model="gpt-4o-mini", max_tokens=100, messages=_msgs(prompt)
    )
    assert second.headers["x-sluice-cache"] == "hit"
    msg = second.parse()
    assert msg.content[0].type == "text" and msg.content[0].text == f"echo: {prompt}"
    assert msg.stop_reason == "end_turn" and msg.usage.output_tokens > 0
    with ant.messages.stream(model="gpt-4o-mini", max_tokens=100, messages=_msgs(prompt)) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == f"echo: {prompt}" and final.stop_reason == "end_turn"
    assert upstream.count("gpt-4o-mini") == before + 1


def test_anthropic_streamed_miss_then_plain_hit(ant: anthropic.Anthropic, upstream: FakeOpenAI) -> None:
    prompt = _unique("stream then plain")
    with ant.messages.stream(model="gpt-4o-mini", max_tokens=64, messages=_msgs(prompt)) as stream:
        text = "".join(stream.text_stream)
    time.sleep(0.05)
    before = upstream.count("gpt-4o-mini")
    raw = ant.messages.with_raw_response.create(model="gpt-4o-mini", max_tokens=64, messages=_msgs(prompt))
    assert raw.headers["x-sluice-cache"] == "hit"
    block = raw.parse().content[0]
    assert block.type == "text" and block.text == text
    assert upstream.count("gpt-4o-mini") == before


def test_embeddings_are_cached_in_either_encoding(oai: openai.OpenAI, upstream: FakeOpenAI) -> None:
    text = _unique("embed this")
    before = upstream.count("text-embedding-3-small")
    first = oai.embeddings.with_raw_response.create(
        model="embed-small", input=[text], encoding_format="float"
    )
    second = oai.embeddings.with_raw_response.create(
        model="embed-small", input=[text], encoding_format="base64"
    )
    assert first.headers["x-sluice-cache"] == "miss" and second.headers["x-sluice-cache"] == "hit"
    b64 = second.parse().data[0].embedding
    assert isinstance(b64, str)
    assert base64_to_floats(b64) == pytest.approx(first.parse().data[0].embedding, abs=1e-6)
    assert upstream.count("text-embedding-3-small") == before + 1


def test_no_store_and_no_cache(oai: openai.OpenAI, upstream: FakeOpenAI) -> None:
    prompt = _unique("controls")
    before = upstream.count("gpt-4o-mini")
    for _ in range(2):
        raw = oai.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=_msgs(prompt), extra_headers={"cache-control": "no-store"}
        )
        assert raw.headers["x-sluice-cache"] == "bypass"
    assert upstream.count("gpt-4o-mini") == before + 2
    plain = oai.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=_msgs(prompt))
    assert plain.headers["x-sluice-cache"] == "miss", "no-store wrote nothing"
    # no-cache: not read (goes upstream), but written (refreshes the entry).
    fresh = oai.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=_msgs(prompt), extra_headers={"cache-control": "No-Cache"}
    )
    assert fresh.headers["x-sluice-cache"] == "bypass"
    assert upstream.count("gpt-4o-mini") == before + 4


def test_malformed_cache_headers_are_ignored_and_said(oai: openai.OpenAI) -> None:
    prompt = _unique("bad header")
    raw = oai.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=_msgs(prompt),
        extra_headers={"cache-control": "no-store, =oops", "x-sluice-cache-threshold": "1.5"},
    )  # fmt: skip
    assert raw.headers["x-sluice-cache"] == "miss", "a malformed cache-control is ignored, not obeyed"
    warning = raw.headers["x-sluice-cache-warning"]
    assert "cache-control" in warning and "threshold" in warning


def test_ttl_zero_route_is_never_read_or_written(gw: Gateway, upstream: FakeOpenAI) -> None:
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=_key(gw, 1), max_retries=0)
    prompt = _unique("billing secret")
    before = upstream.count("gpt-4o-mini")
    for _ in range(2):
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=_msgs(prompt))
        assert raw.headers["x-sluice-cache"] == "bypass" and raw.headers["x-sluice-route"] == "sensitive"
    assert upstream.count("gpt-4o-mini") == before + 2


@pytest.mark.parametrize("model", ["fault-drop-stream", "fault-stream-error"])
def test_cut_or_failed_stream_is_never_replayed(oai: openai.OpenAI, upstream: FakeOpenAI, model: str) -> None:
    prompt = _unique("cut")
    before = upstream.count(model)
    for _ in range(2):
        with pytest.raises(openai.APIError):
            for _chunk in oai.chat.completions.create(model=model, messages=_msgs(prompt), stream=True):
                pass
        time.sleep(0.05)
    assert upstream.count(model) >= before + 2


def test_error_is_never_cached(oai: openai.OpenAI, upstream: FakeOpenAI) -> None:
    prompt = _unique("fail")
    before = upstream.count("fault-500")
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            oai.chat.completions.create(model="fault-500", messages=_msgs(prompt))
    after_two = upstream.count("fault-500") - before
    assert after_two >= 2 and after_two % 2 == 0


def _rows(db: Path, where: str) -> list[sqlite3.Row]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(f"SELECT * FROM requests WHERE {where} ORDER BY ts").fetchall()
    finally:
        conn.close()


def test_hits_are_recorded_at_zero_cost_with_saved(gw: Gateway, oai: openai.OpenAI) -> None:
    prompt = _unique("what did it save")
    ids = [
        oai.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=_msgs(prompt)).headers[
            "x-request-id"
        ]
        for _ in range(2)
    ]
    time.sleep(0.5)
    miss, hit = (_rows(gw.db_path, f"id = '{i}'")[0] for i in ids)
    assert miss["cache"] is None and miss["cost_usd"] > 0 and miss["saved_usd"] is None
    assert (
        hit["cache"] == "exact"
        and hit["cost_usd"] == 0
        and hit["saved_usd"] == pytest.approx(miss["cost_usd"])
    )
    assert hit["prompt_tokens"] == 0 and hit["status"] == 200 and hit["route"] == "cached"
    spend = httpx.get(gw.base_url + "/admin/spend", headers={"authorization": f"Bearer {ADMIN_KEY}"}).json()
    eng = next(r for r in spend["data"] if r["group"] == "eng")
    assert eng["saved_usd"] >= hit["saved_usd"]
    out = gw.cli("spend", "--config", str(gw.config_path), "--json")
    assert next(r for r in json.loads(out.stdout) if r["team"] == "eng")["saved_usd"] > 0


def test_cli_and_admin_stats_and_clear(gw: Gateway, oai: openai.OpenAI) -> None:
    prompt = _unique("clear me")
    oai.chat.completions.create(model="gpt-4o-mini", messages=_msgs(prompt))
    out = json.loads(
        gw.cli("cache", "stats", "--config", str(gw.config_path), "--url", gw.base_url, "--json").stdout
    )
    assert out["backend"] == "memory" and out["entries"] > 0 and out["hits"] > 0 and out["misses"] > 0
    team = gw.cli(
        "cache", "stats", "--config", str(gw.config_path), "--url", gw.base_url, "--team", "billing"
    )
    assert "entries:    0" in team.stdout
    bad = gw.cli(
        "cache",
        "clear",
        "--config",
        str(gw.config_path),
        "--url",
        gw.base_url,
        "--route",
        "nope",
        check=False,
    )
    assert bad.returncode != 0 and "unknown route" in bad.stderr
    cleared = gw.cli(
        "cache", "clear", "--config", str(gw.config_path), "--url", gw.base_url, "--route", "cached"
    )
    assert cleared.stdout.startswith("cleared ") and int(cleared.stdout.split()[1]) > 0
    raw = oai.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=_msgs(prompt))
    assert raw.headers["x-sluice-cache"] == "miss"
    r = httpx.get(
        gw.base_url + "/admin/cache",
        params={"route": "cached"},
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert r.status_code == 200 and r.json()["route"] == "cached"


def test_a_hit_counts_against_rpm_but_not_tpm(gw: Gateway) -> None:
    key = gw.create_key("eng", "--rpm", "4", "--tpm", "1000")
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0)
    prompt, seen = _unique("metered"), []
    for _ in range(4):
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=_msgs(prompt), max_tokens=10
        )
        seen.append((raw.headers["x-sluice-cache"], raw.headers["x-ratelimit-remaining-requests"],
                     int(raw.headers["x-ratelimit-remaining-tokens"])))  # fmt: skip
    assert [s[0] for s in seen] == ["miss", "hit", "hit", "hit"]
    assert [s[1] for s in seen] == ["3", "2", "1", "0"], "every hit is a request"
    assert seen[1][2] == seen[2][2] == seen[3][2] < seen[0][2], "only the miss used tokens"
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o-mini", messages=_msgs(prompt), max_tokens=10)
