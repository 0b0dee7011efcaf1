from __future__ import annotations

from dataclasses import dataclass

from sluice.schema.context import Attempt
from sluice.telemetry.labels import Vocabulary
from sluice.telemetry.metrics import GatewayMetrics, error_source
from sluice.telemetry.prom import render
from tests.telemetry.promtext import parse, total, value


@dataclass
class Rec:
    endpoint: str = "chat"
    team: str | None = "eng"
    route: str | None = None
    requested_model: str | None = "gpt"
    served_model: str | None = "gpt-up"
    provider: str | None = "up"
    stream: bool = False
    status: int = 200
    error_source: str | None = None
    error_kind: str | None = None
    prompt_tokens: int = 10
    completion_tokens: int = 5
    cached_tokens: int = 0
    reasoning_tokens: int = 2
    cost_usd: float | None = 0.5
    latency_ms: float = 120.0
    ttft_ms: float | None = None
    shadow_of: str | None = None


def _metrics() -> GatewayMetrics:
    return GatewayMetrics(
        Vocabulary.of(teams=["eng"], models=["gpt"], served_models=["gpt-up", "gpt-b"], providers=["up", "b"])
    )


def test_request_labels_are_bounded_by_the_policy() -> None:
    m = _metrics()
    m.observe_request(Rec(), [Attempt("up", "gpt-up", status=200, latency_ms=100.0)])
    m.observe_request(Rec(team="intruder", requested_model="sk-secret-model", provider=None, served_model=None,
                          status=404, error_kind="not_found"), [])  # fmt: skip
    s = parse(render(m.registry.snapshot()))
    ok = dict(endpoint="chat", route="none", model="gpt", served_model="gpt-up", provider="up",
              status_class="2xx", error_source="none", error_kind="none")  # fmt: skip
    assert value(s, "sluice_requests_total", **ok) == 1
    assert (
        total(s, "sluice_requests_total", model="other", error_source="client", error_kind="not_found") == 1
    )
    assert "sk-secret-model" not in render(m.registry.snapshot())
    assert value(s, "sluice_tokens_total", team="eng", model="gpt-up", provider="up", type="input") == 10
    assert value(s, "sluice_tokens_total", team="eng", model="gpt-up", provider="up", type="reasoning") == 2
    assert value(s, "sluice_cost_usd_total", team="eng", model="gpt-up", provider="up") == 0.5
    # 120 ms in all, 100 ms upstream: 20 ms of gateway overhead
    assert value(s, "sluice_gateway_overhead_seconds_bucket", endpoint="chat", route="none", le="0.025") == 1
    assert value(s, "sluice_gateway_overhead_seconds_bucket", endpoint="chat", route="none", le="0.01") == 0


def test_retries_and_fallbacks_are_told_apart() -> None:
    m = _metrics()
    attempts = [
        Attempt("up", "gpt-up", status=500, error_kind="server", latency_ms=5),
        Attempt("up", "gpt-up", status=500, error_kind="server", latency_ms=5, backoff_ms=50),
        Attempt("b", "gpt-b", status=200, latency_ms=5),
    ]
    m.observe_request(Rec(provider="b", served_model="gpt-b"), attempts)
    s = parse(render(m.registry.snapshot()))
    assert value(s, "sluice_retries_total", provider="up", model="gpt-up") == 1
    assert value(s, "sluice_fallbacks_total", route="none", model="gpt", provider="b") == 1
    assert value(s, "sluice_upstream_attempts_total", provider="up", model="gpt-up", status_class="5xx",
                 error_kind="server") == 2  # fmt: skip


def test_error_sources() -> None:
    assert error_source(200, None) == "none"
    assert error_source(502, "provider") == "provider"
    assert error_source(429, "provider") == "provider"
    assert error_source(429, "gateway") == "gateway"
    assert error_source(401, "gateway") == "client"
    assert error_source(499, None) == "client"
    assert error_source(503, "gateway") == "gateway"


def test_event_counters_use_closed_vocabularies() -> None:
    m = _metrics()
    m.cache_lookup(None, "hit")
    m.cache_lookup("r", "weird")
    m.guardrail_verdict("unknown", "input", "block")
    m.limit_refused("team", "rpm")
    m.breaker_transition("up", "gpt-up", "open")
    s = parse(render(m.registry.snapshot()))
    assert value(s, "sluice_cache_lookups_total", route="none", outcome="hit") == 1
    assert value(s, "sluice_cache_lookups_total", route="other", outcome="other") == 1
    assert value(s, "sluice_guardrail_verdicts_total", guardrail="other", stage="input", verdict="block") == 1
    assert value(s, "sluice_limit_refusals_total", level="team", limit="rpm") == 1
    assert value(s, "sluice_breaker_transitions_total", provider="up", model="gpt-up", state="open") == 1


def test_a_shadow_call_counts_its_spend_and_attempts_not_a_request() -> None:
    m = _metrics()
    m.observe_request(Rec(shadow_of="r-1"), [Attempt("up", "gpt-up", status=200, latency_ms=5)])
    s = parse(render(m.registry.snapshot()))
    assert total(s, "sluice_requests_total") == 0 and total(s, "sluice_request_duration_seconds_count") == 0
    assert value(s, "sluice_cost_usd_total", team="eng", model="gpt-up", provider="up") == 0.5
    assert total(s, "sluice_upstream_attempts_total") == 1


def test_cache_outcome_reaches_the_request_trace() -> None:
    from sluice.schema.context import RequestContext
    from sluice.telemetry.tracing import RequestTrace, note_cache

    ctx = RequestContext("r", "openai", "chat", None)
    note_cache(ctx, "hit")  # untraced: nothing to do
    ctx.trace = RequestTrace(1, 2, None, True)
    note_cache(ctx, "semantic_hit")
    assert ctx.trace.cache == "semantic_hit"
