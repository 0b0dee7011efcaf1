"""Traces with the OpenTelemetry SDK, exported over OTLP/HTTP (a collector, and/or Langfuse).

One SERVER span per request and one CLIENT span per upstream attempt, named ``chat {model}`` /
``embeddings {model}``, with the GenAI semantic conventions' attributes plus Sluice's own. An
incoming W3C ``traceparent`` is continued; each upstream attempt carries its own CLIENT span's
``traceparent`` (when tracing is off, the caller's ``traceparent`` is passed on unchanged).

Cost on the request path: a span is started when the request enters the pipeline and for each
attempt (ids only); every attribute is set, and every span ended, in :meth:`Tracing.finish` when
the request's record is made. Export runs in the SDK's batch thread: a full queue drops spans, a
collector that is down costs a log line when the outage begins and one when it ends — never a
blocked or failed request.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from typing import Final

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from sluice.schema.context import Attempt, RequestContext
from sluice.telemetry.metrics import METRICS, RequestFacts

log = logging.getLogger("sluice.telemetry")

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
#: ``gen_ai.provider.name`` for each provider type (the semantic conventions' well-known values).
GENAI_PROVIDER: Final = {
    "openai": "openai", "anthropic": "anthropic", "gemini": "gcp.gemini", "bedrock": "aws.bedrock",
    "azure": "azure.ai.openai",
}  # fmt: skip


def parse_traceparent(value: str | None) -> SpanContext | None:
    """A valid version-00 ``traceparent`` (all-zero ids are invalid), else None."""
    if not value:
        return None
    m = _TRACEPARENT.match(value.strip().lower())
    if m is None:
        return None
    trace_id, span_id = int(m.group(1), 16), int(m.group(2), 16)
    if not trace_id or not span_id:
        return None
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(int(m.group(3), 16)))


def format_traceparent(sc: SpanContext) -> str:
    return f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{int(sc.trace_flags):02x}"


class RequestTrace:
    """One request's spans while it is served."""

    __slots__ = ("attempts", "cache", "finish_reasons", "server")

    def __init__(self, server: Span) -> None:
        self.server = server
        self.attempts: list[tuple[Attempt, Span, int]] = []
        self.finish_reasons: list[str] = []
        self.cache: str | None = None

    @property
    def trace_id(self) -> str:
        return f"{self.server.get_span_context().trace_id:032x}"


class _OutageLoggingExporter(SpanExporter):
    """Delegates; logs once when export starts failing and once when it recovers."""

    def __init__(self, inner: SpanExporter, name: str) -> None:
        self._inner = inner
        self._name = name
        self._down = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception:  # the SDK's thread must go on whatever the exporter does
            result = SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            if self._down:
                log.warning("trace export to %s recovered", self._name)
            self._down = False
        else:
            METRICS.trace_export_failures.inc(())
            if not self._down:
                log.warning("trace export to %s failing: spans are dropped until it answers", self._name)
            self._down = True
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


def _ns(wall_s: float) -> int:
    return int(wall_s * 1e9)


class Tracing:
    """The process's tracer. Without an exporter it only passes the caller's ``traceparent`` on."""

    def __init__(self) -> None:
        self._provider: TracerProvider | None = None
        self._tracer: trace.Tracer | None = None
        self._types: Mapping[str, str] = {}
        self._langfuse = False

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    def configure(
        self,
        exporters: Sequence[tuple[str, SpanExporter]],
        *,
        sample_ratio: float,
        provider_types: Mapping[str, str],
        langfuse: bool = False,
        schedule_delay_ms: float = 1000,
    ) -> None:
        self._types = provider_types
        self._langfuse = langfuse
        if not exporters:
            return
        provider = TracerProvider(
            resource=Resource.create({"service.name": "sluice"}),
            sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
        )
        for name, exporter in exporters:
            provider.add_span_processor(
                BatchSpanProcessor(
                    _OutageLoggingExporter(exporter, name),
                    max_queue_size=8192,
                    schedule_delay_millis=schedule_delay_ms,
                    max_export_batch_size=512,
                )
            )
        self._provider = provider
        self._tracer = provider.get_tracer("sluice")

    def shutdown(self) -> None:
        if self._provider is not None:
            self._provider.shutdown()  # flushes what is queued, each exporter within its timeout
        self._provider = self._tracer = None

    # ------------------------------------------------------------------ request path
    def begin(self, ctx: RequestContext) -> RequestTrace | None:
        """The SERVER span, started at the request's arrival (idempotent)."""
        if self._tracer is None:
            return None
        if isinstance(ctx.trace, RequestTrace):
            return ctx.trace
        parent = parse_traceparent(ctx.traceparent)
        pctx: Context | None = trace.set_span_in_context(NonRecordingSpan(parent)) if parent else None
        span = self._tracer.start_span(
            f"{ctx.endpoint} {ctx.requested_model}".rstrip(), context=pctx, kind=SpanKind.SERVER,
            start_time=_ns(ctx.started_wall),
        )  # fmt: skip
        rt = RequestTrace(span)
        ctx.trace = rt
        return rt

    def attempt_started(self, ctx: RequestContext, attempt: Attempt) -> str | None:
        """A CLIENT span for this attempt; returns the ``traceparent`` to send upstream."""
        rt = ctx.trace
        if self._tracer is None or not isinstance(rt, RequestTrace):
            return ctx.traceparent if parse_traceparent(ctx.traceparent) else None
        start = time.time_ns()
        span = self._tracer.start_span(
            f"{ctx.endpoint} {attempt.model}", context=trace.set_span_in_context(rt.server),
            kind=SpanKind.CLIENT, start_time=start,
        )  # fmt: skip
        rt.attempts.append((attempt, span, start))
        return format_traceparent(span.get_span_context())

    def finish(self, ctx: RequestContext, r: RequestFacts) -> None:
        """Every attribute, and the end of every span of the request."""
        if self._tracer is None or ctx.shadow_of is not None:
            return
        rt = ctx.trace if isinstance(ctx.trace, RequestTrace) else self.begin(ctx)
        if rt is None:
            return
        ctx.trace = None  # ended once, however finish is reached
        op = "embeddings" if ctx.endpoint == "embeddings" else "chat"
        for i, (a, span, start) in enumerate(rt.attempts, 1):
            if span.is_recording():
                self._attempt_attributes(span, op, a, i, rt if a.error_kind is None else None)
                if a.error_kind is not None:
                    span.set_status(Status(StatusCode.ERROR, a.error_kind))
            span.end(end_time=start + int(a.latency_ms * 1e6))
        server = rt.server
        if server.is_recording():
            self._server_attributes(server, op, ctx, r, rt)
        server.end(end_time=_ns(ctx.started_wall) + int(r.latency_ms * 1e6))

    def _provider_name(self, provider: str | None) -> str:
        t = self._types.get(provider or "")
        return GENAI_PROVIDER.get(t or "", t or "unknown")

    def _attempt_attributes(self, span: Span, op: str, a: Attempt, n: int, ok: RequestTrace | None) -> None:
        attrs: dict[str, str | int | float | bool | Sequence[str]] = {
            "gen_ai.operation.name": op, "gen_ai.provider.name": self._provider_name(a.provider),
            "gen_ai.request.model": a.model, "sluice.provider": a.provider, "sluice.attempt": n,
            "sluice.backoff_ms": round(a.backoff_ms, 3),
        }  # fmt: skip
        if a.status is not None:
            attrs["http.response.status_code"] = a.status
        if a.error_kind is not None:
            attrs["error.type"] = a.error_kind
        else:
            attrs["gen_ai.response.model"] = a.model
        if ok is not None and ok.finish_reasons:
            attrs["gen_ai.response.finish_reasons"] = list(ok.finish_reasons)
        if a.usage is not None:
            attrs["gen_ai.usage.input_tokens"] = a.usage.prompt_tokens
            attrs["gen_ai.usage.output_tokens"] = a.usage.completion_tokens
        if a.cost_usd is not None:
            attrs["sluice.cost_usd"] = a.cost_usd
        if self._langfuse:
            attrs["langfuse.observation.type"] = "span"  # the request's SERVER span is the generation
        span.set_attributes(attrs)

    def _server_attributes(
        self, span: Span, op: str, ctx: RequestContext, r: RequestFacts, rt: RequestTrace
    ) -> None:
        attrs: dict[str, str | int | float | bool | Sequence[str]] = {
            "gen_ai.operation.name": op, "gen_ai.request.model": ctx.requested_model,
            "gen_ai.request.stream": ctx.stream, "gen_ai.usage.input_tokens": r.prompt_tokens,
            "gen_ai.usage.output_tokens": r.completion_tokens, "http.response.status_code": r.status,
            "sluice.request_id": ctx.request_id, "sluice.attempts": len(ctx.attempts),
            "sluice.dialect": ctx.dialect,
        }  # fmt: skip
        if r.provider is not None:
            attrs["gen_ai.provider.name"] = self._provider_name(r.provider)
            attrs["sluice.provider"] = r.provider
        if r.served_model is not None:
            attrs["gen_ai.response.model"] = r.served_model
        if rt.finish_reasons:
            attrs["gen_ai.response.finish_reasons"] = list(rt.finish_reasons)
        if r.team is not None:
            attrs["sluice.team"] = r.team
        if r.route is not None:
            attrs["sluice.route"] = r.route
        if r.cost_usd is not None:
            attrs["sluice.cost_usd"] = r.cost_usd
        if rt.cache is not None:
            attrs["sluice.cache"] = rt.cache
        if r.ttft_ms is not None:
            attrs["sluice.ttft_ms"] = round(r.ttft_ms, 3)
        chat = ctx.chat
        if chat is not None:
            _request_params(attrs, chat.max_tokens, chat.temperature, chat.top_p)
        if self._langfuse:
            _langfuse_attributes(attrs, r)
        if r.error_kind is not None:
            attrs["error.type"] = r.error_kind
            if r.status >= 500 or r.error_source == "provider":
                span.set_status(Status(StatusCode.ERROR, r.error_kind))
        span.set_attributes(attrs)


def _request_params(
    attrs: dict[str, str | int | float | bool | Sequence[str]],
    max_tokens: int | None,
    temperature: float | None,
    top_p: float | None,
) -> None:
    if max_tokens is not None:
        attrs["gen_ai.request.max_tokens"] = max_tokens
    if temperature is not None:
        attrs["gen_ai.request.temperature"] = temperature
    if top_p is not None:
        attrs["gen_ai.request.top_p"] = top_p


def _langfuse_attributes(attrs: dict[str, str | int | float | bool | Sequence[str]], r: RequestFacts) -> None:
    """Langfuse shows the request as a generation with its model, tokens and Sluice's cost."""
    attrs["langfuse.observation.type"] = "generation"
    if r.served_model is not None:
        attrs["langfuse.observation.model.name"] = r.served_model
    usage = {"input": r.prompt_tokens, "output": r.completion_tokens}
    if r.cached_tokens:
        usage["cache_read_input_tokens"] = r.cached_tokens
    attrs["langfuse.observation.usage_details"] = json.dumps(usage)
    if r.cost_usd is not None:
        attrs["langfuse.observation.cost_details"] = json.dumps({"total": r.cost_usd})
    if r.team is not None:
        attrs["langfuse.trace.metadata.team"] = r.team


#: The process's tracer (configured by ``app.running`` from ``telemetry``).
TRACING: Final = Tracing()


def trace_id_of(ctx: RequestContext) -> str | None:
    """The trace id logs carry: the request's own trace, else the caller's."""
    if isinstance(ctx.trace, RequestTrace):
        return ctx.trace.trace_id
    parent = parse_traceparent(ctx.traceparent)
    return f"{parent.trace_id:032x}" if parent is not None else None
