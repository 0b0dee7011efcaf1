"""The official openai SDK's Responses surface (``client.responses``) through the real gateway, to
every provider's fake: plain, streamed, tools with a tool-output follow-up, previous_response_id,
JSON schema, GET / DELETE, ``store: false``, and another team's id."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from sluice.testing.fake_anthropic import FakeAnthropic
from sluice.testing.fake_azure import FakeAzure
from sluice.testing.fake_bedrock import FakeBedrock
from sluice.testing.fake_gemini import FakeGemini
from sluice.testing.fake_openai import FakeOpenAI
from sluice.testing.loopback import FakeUpstream
from tests.e2e.gateway import Gateway, make_gateway

pytestmark = pytest.mark.e2e
TEAM_KEYS: dict[str, str] = {}
MODELS = ["oai", "azure", "claude", "gemini", "bedrock"]
TOOL: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": True,
}


class Fakes:
    def __init__(self) -> None:
        self.by_model: dict[str, FakeUpstream | FakeOpenAI] = {
            "oai": FakeOpenAI(),
            "azure": FakeAzure(),
            "claude": FakeAnthropic(),
            "gemini": FakeGemini(),
            "bedrock": FakeBedrock(),
        }

    def last_body(self, model: str) -> dict[str, Any]:
        body: dict[str, Any] = self.by_model[model].requests[-1]["body"]
        return body


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    f = Fakes()
    for fake in f.by_model.values():
        fake.__enter__()
    yield f
    for fake in f.by_model.values():
        fake.__exit__(None, None, None)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, fakes: Fakes) -> Iterator[Gateway]:
    workdir: Path = tmp_path_factory.mktemp("responses")
    up = fakes.by_model
    config = f"""
store: {{url: "sqlite:///{workdir}/sluice.db", flush_interval_s: 0.05, responses_retention_days: 7}}
providers:
  oai: {{type: openai, base_url: "{up["oai"].base_url}", api_key: env:SLUICE_TEST_UPSTREAM_KEY}}
  az: {{type: azure, base_url: "{up["azure"].base_url.removesuffix("/v1")}", api_key: env:SLUICE_TEST_UPSTREAM_KEY, api_version: "2024-10-21"}}
  claude: {{type: anthropic, base_url: "{up["claude"].base_url}", api_key: env:SLUICE_TEST_UPSTREAM_KEY}}
  gem: {{type: gemini, base_url: "{up["gemini"].base_url}", api_key: env:SLUICE_TEST_UPSTREAM_KEY}}
  aws: {{type: bedrock, base_url: "{up["bedrock"].base_url}", region: us-east-1, aws_access_key_id: env:SLUICE_TEST_UPSTREAM_KEY, aws_secret_access_key: env:SLUICE_TEST_UPSTREAM_KEY}}
models:
  oai: {{targets: [{{provider: oai, model: gpt-4o-mini}}]}}
  azure: {{targets: [{{provider: az, model: gpt-4o-mini}}]}}
  claude: {{targets: [{{provider: claude, model: claude-sonnet-4-5}}]}}
  gemini: {{targets: [{{provider: gem, model: gemini-2.5-flash}}]}}
  bedrock: {{targets: [{{provider: aws, model: "anthropic.claude-3-5-haiku-20241022-v1:0"}}]}}
  broken: {{targets: [{{provider: oai, model: fault-drop-stream}}]}}
teams:
  eng: {{}}
  ops: {{}}
  tiny: {{rate_limit: {{rpm: 1}}}}
"""
    g = make_gateway(workdir, config)
    for team in ("eng", "ops", "tiny"):
        TEAM_KEYS[team] = g.create_key(team)
    g.start()
    yield g
    g.stop()


def client(gw: Gateway, team: str = "eng") -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url + "/v1", api_key=TEAM_KEYS[team], max_retries=0)


@pytest.mark.parametrize("model", MODELS)
def test_plain_and_instructions(gw: Gateway, fakes: Fakes, model: str) -> None:
    resp = client(gw).responses.create(model=model, input="hi there", instructions="be terse")
    assert resp.output_text == "echo: hi there"
    assert resp.status == "completed" and resp.id.startswith("resp_") and resp.object == "response"
    assert resp.output[0].type == "message" and resp.instructions == "be terse"
    assert resp.usage is not None and resp.usage.input_tokens > 0 and resp.usage.output_tokens > 0
    assert "be terse" in json.dumps(fakes.last_body(model)), "instructions reach the backend as a system turn"


@pytest.mark.parametrize("model", MODELS)
def test_streamed_event_sequence(gw: Gateway, model: str) -> None:
    events = list(client(gw).responses.create(model=model, input="a b c", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "echo: a b c"
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output_text == text and final.usage is not None and final.usage.output_tokens > 0
    # The SDK's own stream helper checks item identities and completion.
    with client(gw).responses.stream(model=model, input="x y") as stream:
        assert stream.get_final_response().output_text == "echo: x y"


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("stream", [False, True])
def test_tools_and_tool_output_follow_up(gw: Gateway, fakes: Fakes, model: str, stream: bool) -> None:
    c = client(gw)
    if stream:
        with c.responses.stream(model=model, input="weather in Paris?", tools=[TOOL]) as s:
            kinds = [e.type for e in s]
            first = s.get_final_response()
        assert "response.function_call_arguments.delta" in kinds
        assert "response.function_call_arguments.done" in kinds
    else:
        first = c.responses.create(model=model, input="weather in Paris?", tools=[TOOL])
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments) == {"city": "Paris"}
    follow = c.responses.create(
        model=model,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny, 21C"}],
    )
    assert follow.status == "completed" and follow.previous_response_id == first.id
    sent = json.dumps(fakes.last_body(model))
    assert "sunny, 21C" in sent and "weather in Paris?" in sent and "get_weather" in sent


@pytest.mark.parametrize("model", MODELS)
def test_previous_response_id_replays_the_conversation(gw: Gateway, fakes: Fakes, model: str) -> None:
    c = client(gw)
    first = c.responses.create(model=model, input="my name is Bob", instructions="first rules")
    second = c.responses.create(model=model, input="what is my name", previous_response_id=first.id)
    assert second.output_text == "echo: what is my name"
    sent = json.dumps(fakes.last_body(model))
    assert "my name is Bob" in sent and "echo: my name is Bob" in sent and "what is my name" in sent
    assert "first rules" not in sent, "instructions are not carried over"
    third = c.responses.create(model=model, input="and again", previous_response_id=second.id)
    assert third.output_text == "echo: and again"
    assert "echo: what is my name" in json.dumps(fakes.last_body(model))


@pytest.mark.parametrize("model", ["oai", "azure", "claude", "gemini"])
def test_json_schema(gw: Gateway, fakes: Fakes, model: str) -> None:
    schema = {
        "type": "object",
        "properties": {"temperature_c": {"type": "number"}},
        "required": ["temperature_c"],
    }
    resp = client(gw).responses.create(
        model=model,
        input="weather?",
        text={"format": {"type": "json_schema", "name": "weather", "schema": schema, "strict": True}},
    )
    assert resp.status == "completed"
    assert resp.text.format.type == "json_schema"  # type: ignore[union-attr]
    sent = fakes.last_body(model)
    assert "temperature_c" in json.dumps(sent)
    if model in ("oai", "azure"):
        assert sent["response_format"]["type"] == "json_schema"
        assert sent["response_format"]["json_schema"]["name"] == "weather"


def test_reasoning_and_max_output_tokens_reach_openai(gw: Gateway, fakes: Fakes) -> None:
    client(gw).responses.create(model="oai", input="hi", reasoning={"effort": "low"}, max_output_tokens=50)
    sent = fakes.last_body("oai")
    assert (
        sent["reasoning_effort"] == "low" and sent.get("max_completion_tokens", sent.get("max_tokens")) == 50
    )


@pytest.mark.parametrize("stream", [False, True])
def test_get_and_delete(gw: Gateway, stream: bool) -> None:
    c = client(gw)
    if stream:
        with c.responses.stream(model="claude", input="keep me") as s:
            created = s.get_final_response()
    else:
        created = c.responses.create(model="claude", input="keep me")
    got = c.responses.retrieve(created.id)
    assert got.id == created.id and got.output_text == "echo: keep me" and got.status == "completed"
    deleted = c.responses.with_raw_response.delete(created.id).http_response.json()
    assert deleted == {"id": created.id, "object": "response.deleted", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.create(model="claude", input="x", previous_response_id=created.id)


def test_store_false_is_not_kept(gw: Gateway) -> None:
    c = client(gw)
    resp = c.responses.create(model="oai", input="forget me", store=False)
    assert resp.output_text == "echo: forget me" and resp.store is False
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(resp.id)
    with pytest.raises(openai.NotFoundError) as err:
        c.responses.create(model="oai", input="x", previous_response_id=resp.id)
    assert err.value.code == "previous_response_not_found"


def test_another_teams_response_is_not_found(gw: Gateway) -> None:
    mine = client(gw).responses.create(model="oai", input="private")
    theirs = client(gw, "ops")
    with pytest.raises(openai.NotFoundError):
        theirs.responses.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        theirs.responses.delete(mine.id)
    with pytest.raises(openai.NotFoundError):
        theirs.responses.create(model="oai", input="x", previous_response_id=mine.id)
    assert client(gw).responses.retrieve(mine.id).output_text == "echo: private"


def test_refusals_in_openai_shape(gw: Gateway) -> None:
    c = client(gw)
    with pytest.raises(openai.BadRequestError) as err:
        c.responses.create(model="oai", input="x", tools=[{"type": "web_search"}])
    assert "web_search" in err.value.message and err.value.param == "tools[0].type"
    with pytest.raises(openai.BadRequestError) as err:
        c.responses.create(model="oai", input="x", extra_body={"bogus": 1})
    assert err.value.code == "unknown_parameter"
    with pytest.raises(openai.NotFoundError):
        c.responses.create(model="nope", input="x")
    bad = openai.OpenAI(base_url=gw.base_url + "/v1", api_key="sk-sluice-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.responses.create(model="oai", input="x")
    with pytest.raises(openai.AuthenticationError):
        bad.responses.retrieve("resp_x")


def test_limits_and_the_request_log_apply_as_on_chat(gw: Gateway) -> None:
    c = client(gw, "tiny")
    c.responses.create(model="oai", input="one")
    with pytest.raises(openai.RateLimitError):
        c.responses.create(model="oai", input="two")
    deadline = time.monotonic() + 10
    rows: list[tuple[str, int, str, int]] = []
    while time.monotonic() < deadline and len(rows) < 2:
        with contextlib.closing(sqlite3.connect(gw.db_path)) as db:
            sql = "SELECT endpoint, status, provider, prompt_tokens FROM requests WHERE team = 'tiny' ORDER BY ts"
            rows = db.execute(sql).fetchall()
        time.sleep(0.05)
    assert [(r[0], r[1]) for r in rows] == [("chat", 200), ("chat", 429)]
    assert rows[0][2] == "oai" and rows[0][3] > 0


def test_a_broken_stream_fails_and_is_not_stored(gw: Gateway) -> None:
    c = client(gw)
    events = list(c.responses.create(model="broken", input="a b c d e f", stream=True))
    kinds = [e.type for e in events]
    assert kinds[-2:] == ["error", "response.failed"] and "response.completed" not in kinds
    failed = events[-1].response  # type: ignore[union-attr]
    assert failed.status == "failed" and failed.error is not None
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(failed.id)
