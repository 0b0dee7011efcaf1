"""The compact encoder writes exactly what the OpenTelemetry exporter's own encoder writes
(compared as decoded protobuf messages, with the official classes)."""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from sluice.telemetry.otlp_encode import encode_spans

RES = Resource.create({"service.name": "sluice"})
SCOPE = InstrumentationScope("sluice")


def _spans() -> list[ReadableSpan]:
    parent = SpanContext(0xABC, 0x123, is_remote=True, trace_flags=TraceFlags(1))
    server = SpanContext(0xABC, 0x456, is_remote=False, trace_flags=TraceFlags(1))
    attrs = {"gen_ai.operation.name": "chat", "gen_ai.request.stream": True, "gen_ai.usage.input_tokens": 12,
             "big": 2**40, "neg": -3, "sluice.cost_usd": 0.00125, "gen_ai.response.finish_reasons": ["stop", "length"],
             "unicode": "héllo ✓", "sluice.request_id": "r-1", "long": "x" * 300}  # fmt: skip
    return [
        ReadableSpan(
            "chat m",
            server,
            parent,
            RES,
            attrs,
            kind=SpanKind.SERVER,
            start_time=10**18,
            end_time=10**18 + 5_000_000,
            instrumentation_scope=SCOPE,
        ),
        ReadableSpan(
            "chat up-m",
            SpanContext(0xABC, 0x789, is_remote=False, trace_flags=TraceFlags(1)),
            server,
            RES,
            {"error.type": "server", "sluice.attempt": 2},
            kind=SpanKind.CLIENT,
            status=Status(StatusCode.ERROR, "server"),
            start_time=1,
            end_time=2,
            instrumentation_scope=SCOPE,
        ),
        ReadableSpan(
            "root",
            SpanContext(0xDEF, 0x1, is_remote=False, trace_flags=TraceFlags(1)),
            None,
            RES,
            {},
            kind=SpanKind.SERVER,
            start_time=3,
            end_time=4,
            instrumentation_scope=SCOPE,
        ),
    ]


def _decoded(data: bytes) -> ExportTraceServiceRequest:
    msg = ExportTraceServiceRequest()
    msg.ParseFromString(data)
    return msg


def test_same_message_as_the_exporters_encoder() -> None:
    for _ in range(2):  # the second time from the memo
        ours = _decoded(encode_spans(_spans()))
        theirs = sdk_encode(_spans())
        assert ours == theirs, f"{ours}\n!=\n{theirs}"
