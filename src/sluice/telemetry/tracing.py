"""Traces with the OpenTelemetry SDK, exported over OTLP/HTTP (a collector, and/or Langfuse).

One SERVER span per request and one CLIENT span per upstream attempt, named ``chat {model}`` /
``embeddings {model}``, with the GenAI semantic conventions' attributes plus Sluice's own. An
incoming W3C ``traceparent`` is continued; each upstream attempt carries its own CLIENT span's
``traceparent`` (when tracing is off, the caller's ``traceparent`` is passed on unchanged).

Cost on the request path: ids and the sampling decision when the request enters the pipeline and
when each attempt starts; the finished spans are made once, in :meth:`Tracing.finish`, as the SDK's
:class:`ReadableSpan` (the request is over by then, so nothing needs the SDK's live, locked Span),
and handed to the SDK's batch processors. Export runs in their thread (OTLP/HTTP, encoded by
:mod:`sluice.telemetry.otlp_encode`): a full queue drops spans, a collector that is down costs a log
line when the outage begins and one when it ends — never a blocked or failed request.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Mapping, Sequence
from typing import Final

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from sluice.schema.context import Attempt, RequestContext
from sluice.telemetry.metrics import METRICS, RequestFacts
from sluice.telemetry.otlp_encode import encode_spans

log = logging.getLogger("sluice.telemetry")

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
#: ``gen_ai.provider.name`` for each provider type (the semantic conventions' well-known values).
GENAI_PROVIDER: Final = {
    "openai": "openai", "anthropic": "anthropic", "gemini": "gcp.gemini", "bedrock": "aws.bedrock",
    "azure": "azure.ai.openai",
}  # fmt: skip
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_UNSAMPLED = TraceFlags(TraceFlags.DEFAULT)
_OK = Status(StatusCode.UNSET)
Attrs = dict[str, str | int | float | bool | Sequence[str]]


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


def _id(bits: int) -> int:
    n = random.getrandbits(bits)
    return n or 1


class RequestTrace:
    """One request's trace while it is served: ids and what finish needs to know."""

    __slots__ = ("attempts", "cache", "finish_reasons", "flags", "parent", "span_id", "trace_id")

    def __init__(self, trace_id: int, span_id: int, parent: SpanContext | None, sampled: bool) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent = parent
        self.flags = _SAMPLED if sampled else _UNSAMPLED
        #: (attempt, its span id, start time in ns)
        self.attempts: list[tuple[Attempt, int, int]] = []
        self.finish_reasons: list[str] = []
        #: Set by the cache layer (``hit``, ``semantic_hit``, ``miss``, ...), shown as ``sluice.cache``.
        self.cache: str | None = None

    @property
    def trace_id_hex(self) -> str:
        return f"{self.trace_id:032x}"

    def traceparent(self, span_id: int) -> str:
        return f"00-{self.trace_id:032x}-{span_id:016x}-{int(self.flags):02x}"


class CompactOTLPSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP exporter (endpoint, headers, timeout, retries), with the compact encoder."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        client = getattr(self, "_client", None)
        if client is None or getattr(self, "_shutdown", False):  # another SDK version: its own path
            return super().export(spans)
        return (
            SpanExportResult.SUCCESS
            if client.export(encode_spans(spans)).success
            else SpanExportResult.FAILURE
        )


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
        self._processors: list[SpanProcessor] = []
        self._bound = 0
        self._resource = Resource.create({"service.name": "sluice"})
        self._scope = InstrumentationScope("sluice")
        self._types: Mapping[str, str] = {}
        self._langfuse = False

    @property
    def enabled(self) -> bool:
        return bool(self._processors)

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
        self._bound = TraceIdRatioBased.get_bound_for_rate(sample_ratio)
        self._processors = [
            BatchSpanProcessor(
                _OutageLoggingExporter(exporter, name),
                max_queue_size=8192,
                schedule_delay_millis=schedule_delay_ms,
                max_export_batch_size=512,
            )
            for name, exporter in exporters
        ]

    def shutdown(self) -> None:
        processors, self._processors = self._processors, []
        for p in processors:
            p.shutdown()  # flushes what is queued, each exporter within its timeout

    # ------------------------------------------------------------------ request path
    def begin(self, ctx: RequestContext) -> RequestTrace | None:
        """The request's trace: the caller's continued (its sampling decision followed), or a new
        one sampled at ``sample_ratio``. Idempotent."""
        if not self._processors:
            return None
        if isinstance(ctx.trace, RequestTrace):
            return ctx.trace
        parent = parse_traceparent(ctx.traceparent)
        if parent is not None:
            rt = RequestTrace(parent.trace_id, _id(64), parent, parent.trace_flags.sampled)
        else:
            trace_id = _id(128)
            rt = RequestTrace(
                trace_id, _id(64), None, trace_id & TraceIdRatioBased.TRACE_ID_LIMIT < self._bound
            )
        ctx.trace = rt
        return rt

    def attempt_started(self, ctx: RequestContext, attempt: Attempt) -> str | None:
        """A CLIENT span id for this attempt; returns the ``traceparent`` to send upstream."""
        rt = ctx.trace
        if not isinstance(rt, RequestTrace):
            return ctx.traceparent if parse_traceparent(ctx.traceparent) else None
        span_id = _id(64)
        rt.attempts.append((attempt, span_id, time.time_ns()))
        return rt.traceparent(span_id)

    def finish(self, ctx: RequestContext, r: RequestFacts) -> None:
        """The request's spans, made and handed to the exporters (when sampled)."""
        if not self._processors or ctx.shadow_of is not None:
            return
        rt = ctx.trace if isinstance(ctx.trace, RequestTrace) else self.begin(ctx)
        if rt is None:
            return
        ctx.trace = None  # ended once, however finish is reached
        if not rt.flags.sampled:
            return
        op = "embeddings" if ctx.endpoint == "embeddings" else "chat"
        server_ctx = SpanContext(rt.trace_id, rt.span_id, is_remote=False, trace_flags=_SAMPLED)
        spans = []
        for i, (a, span_id, start) in enumerate(rt.attempts, 1):
            attrs = self._attempt_attributes(op, a, i, rt if a.error_kind is None else None)
            spans.append(ReadableSpan(
                f"{op} {a.model}", SpanContext(rt.trace_id, span_id, is_remote=False, trace_flags=_SAMPLED),
                server_ctx, self._resource, attrs, kind=SpanKind.CLIENT,
                status=Status(StatusCode.ERROR, a.error_kind) if a.error_kind is not None else _OK,
                start_time=start, end_time=start + int(a.latency_ms * 1e6), instrumentation_scope=self._scope,
            ))  # fmt: skip
        attrs, status = self._server_attributes(op, ctx, r, rt)
        start = _ns(ctx.started_wall)
        spans.append(ReadableSpan(
            f"{op} {ctx.requested_model}".rstrip(), server_ctx, rt.parent, self._resource, attrs,
            kind=SpanKind.SERVER, status=status, start_time=start, end_time=start + int(r.latency_ms * 1e6),
            instrumentation_scope=self._scope,
        ))  # fmt: skip
        for p in self._processors:
            for span in spans:
                p.on_end(span)

    def _provider_name(self, provider: str | None) -> str:
        t = self._types.get(provider or "")
        return GENAI_PROVIDER.get(t or "", t or "unknown")

    def _attempt_attributes(self, op: str, a: Attempt, n: int, ok: RequestTrace | None) -> Attrs:
        attrs: Attrs = {
            "gen_ai.operation.name": op, "gen_ai.provider.name": self._provider_name(a.provider),
            "gen_ai.request.model": a.model, "sluice.provider": a.provider, "sluice.attempt": n,
        }  # fmt: skip
        if a.backoff_ms:
            attrs["sluice.backoff_ms"] = round(a.backoff_ms, 3)
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
        if a.cost_nusd is not None:
            attrs["sluice.cost_usd"] = a.cost_nusd / 1e9
        if self._langfuse:
            attrs["langfuse.observation.type"] = "span"  # the request's SERVER span is the generation
        return attrs

    def _server_attributes(
        self, op: str, ctx: RequestContext, r: RequestFacts, rt: RequestTrace
    ) -> tuple[Attrs, Status]:
        status = _OK
        attrs: Attrs = {
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
        # Prompts and answers only as logging.payloads stores them: redacted by every PII and
        # secrets detector, or whole with `full`; with `none` (the default) never.
        if r.request_body is not None:
            attrs["gen_ai.input.messages"] = r.request_body
        if r.response_body is not None:
            attrs["gen_ai.output.messages"] = r.response_body
        chat = ctx.chat
        if chat is not None:
            _request_params(attrs, chat.max_tokens, chat.temperature, chat.top_p)
        if self._langfuse:
            _langfuse_attributes(attrs, r)
        if r.error_kind is not None:
            attrs["error.type"] = r.error_kind
            if r.status >= 500 or r.error_source == "provider":
                status = Status(StatusCode.ERROR, r.error_kind)
        return attrs, status


def _request_params(
    attrs: Attrs,
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


def _langfuse_attributes(attrs: Attrs, r: RequestFacts) -> None:
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


def note_cache(ctx: RequestContext, outcome: str) -> None:
    """For the cache layer: the lookup's outcome, shown on the request's span as ``sluice.cache``."""
    if isinstance(ctx.trace, RequestTrace):
        ctx.trace.cache = outcome


def trace_id_of(ctx: RequestContext) -> str | None:
    """The trace id logs carry: the request's own trace, else the caller's."""
    if isinstance(ctx.trace, RequestTrace):
        return ctx.trace.trace_id_hex
    parent = parse_traceparent(ctx.traceparent)
    return f"{parent.trace_id:032x}" if parent is not None else None
