"""OpenTelemetry traces from the real gateway to a test OTLP/HTTP receiver (real protobuf)."""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from sluice.testing.fake_openai import FakeOpenAI
from tests.e2e.gateway import ADMIN_KEY, UPSTREAM_KEY, Gateway, free_port, make_gateway, standard_config
from tests.telemetry.otlp_receiver import OtlpReceiver, ReceivedSpan

pytestmark = pytest.mark.e2e
SERVER, CLIENT = 2, 3  # SpanKind in the OTLP protobuf
STATUS_ERROR = 2


def _traced(workdir: Path, upstream: str, endpoint: str) -> str:
    return standard_config(workdir, upstream) + (
        f"telemetry:\n  otlp: {{endpoint: {endpoint}, headers: {{x-tenant: env:TEST_TENANT}}, sample_ratio: 1.0}}\n"
    )


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as r:
        yield r


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, fake_upstream: FakeOpenAI, receiver: OtlpReceiver
) -> Iterator[Gateway]:
    workdir = tmp_path_factory.mktemp("traced")
    g = make_gateway(workdir, _traced(workdir, fake_upstream.base_url, receiver.url))
    g.env["TEST_TENANT"] = "tenant-7"
    g.create_key("eng")
    g.start()
    yield g
    g.stop()


def _client(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url + "/v1", api_key=next(iter(gw.keys.values())), max_retries=0)


def _trace(receiver: OtlpReceiver, trace_id: str, n: int) -> list[ReceivedSpan]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        spans = [s for s in receiver.spans if s.trace_id == trace_id]
        if len(spans) >= n:
            return spans
        time.sleep(0.05)
    raise AssertionError(
        f"expected {n} spans of trace {trace_id}, got {[s.name for s in receiver.spans if s.trace_id == trace_id]}"
    )


def _upstream_headers(fake: FakeOpenAI, text: str) -> dict[str, str]:
    for r in reversed(fake.requests):
        if text in json.dumps(r["body"]):
            return {k.lower(): v for k, v in r["headers"].items()}
    raise AssertionError("the upstream never saw the request")


def test_spans_continue_the_callers_trace_and_carry_genai_attributes(
    gw: Gateway, receiver: OtlpReceiver, fake_upstream: FakeOpenAI
) -> None:
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    text = f"trace me {trace_id}"
    _client(gw).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": text}], max_tokens=50,
        extra_headers={"traceparent": f"00-{trace_id}-{parent}-01"},
    )  # fmt: skip
    spans = _trace(receiver, trace_id, 2)
    server = next(s for s in spans if s.kind == SERVER)
    client = next(s for s in spans if s.kind == CLIENT)
    assert server.parent_span_id == parent and client.parent_span_id == server.span_id
    assert server.name == "chat gpt-4o-mini" and client.name == "chat gpt-4o-mini"
    a = server.attributes
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o-mini" and a["gen_ai.response.model"] == "gpt-4o-mini"
    assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
    assert a["gen_ai.response.finish_reasons"] == ["stop"]
    assert a["gen_ai.request.stream"] is False and a["gen_ai.request.max_tokens"] == 50
    assert a["sluice.team"] == "eng" and a["sluice.cost_usd"] > 0 and a["sluice.attempts"] == 1
    assert a["http.response.status_code"] == 200
    c = client.attributes
    assert c["sluice.attempt"] == 1 and c["gen_ai.provider.name"] == "openai" and c["sluice.provider"] == "up"
    assert c["gen_ai.usage.input_tokens"] == a["gen_ai.usage.input_tokens"]
    assert client.start_ns >= server.start_ns and client.end_ns <= server.end_ns
    # the upstream got the CLIENT span's context, never the caller's own span id
    assert _upstream_headers(fake_upstream, text)["traceparent"] == f"00-{trace_id}-{client.span_id}-01"
    assert any(h.get("x-tenant") == "tenant-7" for h in receiver.headers)
    dump = json.dumps([s.attributes for s in spans])
    for secret in [UPSTREAM_KEY, ADMIN_KEY, *gw.keys.values(), text]:
        assert secret not in dump


def test_stream_span(gw: Gateway, receiver: OtlpReceiver) -> None:
    trace_id = secrets.token_hex(16)
    stream = _client(gw).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "one two three"}], stream=True,
        extra_headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
    )  # fmt: skip
    assert list(stream)
    server = next(s for s in _trace(receiver, trace_id, 2) if s.kind == SERVER)
    assert server.attributes["gen_ai.request.stream"] is True
    assert server.attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert server.attributes["sluice.ttft_ms"] > 0


def test_failed_attempts_are_error_spans(gw: Gateway, receiver: OtlpReceiver) -> None:
    trace_id = secrets.token_hex(16)
    with pytest.raises(openai.InternalServerError):
        _client(gw).chat.completions.create(
            model="fault-500", messages=[{"role": "user", "content": "x"}],
            extra_headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
        )  # fmt: skip
    spans = _trace(receiver, trace_id, 3)
    server = next(s for s in spans if s.kind == SERVER)
    attempts = sorted((s for s in spans if s.kind == CLIENT), key=lambda s: s.attributes["sluice.attempt"])
    assert server.attributes["error.type"] == "server" and server.status_code == STATUS_ERROR
    assert [s.attributes["sluice.attempt"] for s in attempts] == [1, 2]
    assert all(s.attributes["error.type"] == "server" and s.status_code == STATUS_ERROR for s in attempts)
    assert all(s.attributes["http.response.status_code"] == 500 for s in attempts)
    # each failed attempt, and the end of the retries, logged once at warning with both ids
    lines = [json.loads(x) for x in gw.log_path.read_text().splitlines()]  # every line is one JSON object
    mine = [x for x in lines if x.get("trace_id") == trace_id and x["level"] == "warning"]
    assert [x["msg"] for x in mine].count("upstream attempt failed") == 2
    assert [x["msg"] for x in mine].count("no upstream answered: retries and fallbacks exhausted") == 1
    assert all(x["request_id"] == server.attributes["sluice.request_id"] for x in mine)
    failed = next(x for x in mine if x["msg"] == "upstream attempt failed")
    assert (
        failed["provider"] == "up" and failed["error_kind"] == "server" and failed["upstream_status"] == 500
    )
    access = [x for x in lines if x["logger"] == "sluice.access" and x.get("trace_id") == trace_id]
    assert len(access) == 1 and access[0]["status"] == 502 and access[0]["msg"] == "access"


def test_a_request_without_traceparent_starts_a_trace(gw: Gateway, receiver: OtlpReceiver) -> None:
    before = len(receiver.spans)
    _client(gw).embeddings.create(model="embed-small", input="hello")
    spans = receiver.wait_for(before + 2)[before:]
    server = next(
        s for s in spans if s.kind == SERVER and s.attributes["gen_ai.operation.name"] == "embeddings"
    )
    assert server.parent_span_id == "" and server.name == "embeddings embed-small"


def test_collector_down_never_fails_a_request_and_is_logged_once(
    tmp_path: Path, fake_upstream: FakeOpenAI
) -> None:
    g = make_gateway(tmp_path, _traced(tmp_path, fake_upstream.base_url, f"http://127.0.0.1:{free_port()}"))
    g.env["TEST_TENANT"] = "t"
    key = g.create_key("eng")
    g.start()
    try:
        client = openai.OpenAI(base_url=g.base_url + "/v1", api_key=key, max_retries=0)
        for i in range(3):
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": f"n{i}"}]
            )
            time.sleep(1.2)  # a batch per request: three failed exports
    finally:
        g.stop()
    lines = [json.loads(line) for line in g.log_path.read_text().splitlines() if line.startswith("{")]
    failing = [x for x in lines if "trace export" in x["msg"] and "failing" in x["msg"]]
    assert len(failing) == 1 and failing[0]["level"] == "warning"


def test_without_tracing_the_callers_traceparent_is_passed_on(
    gateway: Gateway, key: str, fake_upstream: FakeOpenAI
) -> None:
    tp = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
    text = f"pass on {tp}"
    openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": text}], extra_headers={"traceparent": tp}
    )
    assert _upstream_headers(fake_upstream, text)["traceparent"] == tp


def test_langfuse_preset_sends_generations_to_its_otlp_endpoint(
    tmp_path: Path, fake_upstream: FakeOpenAI
) -> None:
    with OtlpReceiver() as lf:
        config = standard_config(tmp_path, fake_upstream.base_url) + (
            f"telemetry:\n  langfuse: {{host: {lf.url}, public_key: env:LF_PK, secret_key: env:LF_SK}}\n"
        )
        g = make_gateway(tmp_path, config)
        g.env.update({"LF_PK": "pk-lf-1", "LF_SK": "sk-lf-2"})
        key = g.create_key("eng")
        g.start()
        try:
            trace_id = secrets.token_hex(16)
            openai.OpenAI(base_url=g.base_url + "/v1", api_key=key, max_retries=0).chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                extra_headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
            )  # fmt: skip
            spans = _trace(lf, trace_id, 2)
        finally:
            g.stop()
    assert lf.headers[0][":path"] == "/api/public/otel/v1/traces"
    assert lf.headers[0]["authorization"] == "Basic " + base64.b64encode(b"pk-lf-1:sk-lf-2").decode()
    server = next(s for s in spans if s.kind == SERVER).attributes
    assert server["langfuse.observation.type"] == "generation"
    assert server["langfuse.observation.model.name"] == "gpt-4o-mini"
    usage = json.loads(server["langfuse.observation.usage_details"])
    assert usage["input"] == server["gen_ai.usage.input_tokens"] and usage["output"] > 0
    assert json.loads(server["langfuse.observation.cost_details"])["total"] == pytest.approx(
        server["sluice.cost_usd"]
    )
    assert next(s for s in spans if s.kind == CLIENT).attributes["langfuse.observation.type"] == "span"


def test_payloads_reach_a_span_only_as_logging_payloads_stores_them(
    tmp_path: Path, fake_upstream: FakeOpenAI, receiver: OtlpReceiver
) -> None:
    config = _traced(tmp_path, fake_upstream.base_url, receiver.url).replace(
        "logging:\n", "logging:\n  payloads: redacted\n", 1
    )
    if "payloads: redacted" not in config:
        config += "logging:\n  payloads: redacted\n"
    g = make_gateway(tmp_path, config)
    g.env["TEST_TENANT"] = "tenant-7"
    g.create_key("eng")
    g.start()
    try:
        trace_id = secrets.token_hex(16)
        _client(g).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "mail bob@example.com please"}],
            extra_headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
        )  # fmt: skip
        server = next(s for s in _trace(receiver, trace_id, 2) if s.kind == SERVER)
    finally:
        g.stop()
    sent = server.attributes["gen_ai.input.messages"]
    assert "mail" in sent and "bob@example.com" not in sent and "[EMAIL_1]" in sent
    assert "bob@example.com" not in str(server.attributes.get("gen_ai.output.messages", ""))
