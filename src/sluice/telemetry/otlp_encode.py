"""OTLP protobuf encoding of finished spans, written straight to the wire format.

The OpenTelemetry exporter's own encoder builds a protobuf object per span, attribute and value
(about 35 µs of CPU per span of ours here); writing the same message directly costs a few µs, which
is what keeps tracing at 100% sampling inside its budget (bench/telemetry_micro.py). Only the
encoding is ours: the SDK's span model, batch processor and OTLP/HTTP client do the rest.

Field numbers are OTLP's (opentelemetry/proto/trace/v1/trace.proto, common.proto,
collector/trace/v1/trace_service.proto); tests decode the output with the official protobuf
classes and compare it with the exporter's own encoding.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

_pack_double = struct.Struct("<d").pack
_pack_fixed64 = struct.Struct("<Q").pack
_FLAGS_LOCAL = struct.pack("<I", 0x100)
_FLAGS_REMOTE = struct.pack("<I", 0x300)


_SMALL = [bytes((i,)) for i in range(0x80)]


def _varint(n: int) -> bytes:
    if 0 <= n < 0x80:
        return _SMALL[n]
    if n < 0:
        n += 1 << 64  # int64 as two's complement, the protobuf way
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _ld(tag: int, payload: bytes) -> bytes:
    """A length-delimited field (``tag`` already shifted, wire type 2)."""
    n = len(payload)
    return _SMALL[tag] + (_SMALL[n] if n < 0x80 else _varint(n)) + payload


def _any(v: object) -> bytes:
    """An AnyValue message."""
    if isinstance(v, str):
        return _ld(0x0A, v.encode())
    if isinstance(v, bool):
        return b"\x10\x01" if v else b"\x10\x00"
    if isinstance(v, int):
        return b"\x18" + _varint(v)
    if isinstance(v, float):
        return b"\x21" + _pack_double(v)
    if isinstance(v, bytes):
        return _ld(0x3A, v)
    if isinstance(v, Sequence):
        return _ld(0x2A, b"".join(_ld(0x0A, _any(x)) for x in v))  # ArrayValue{values}
    return _ld(0x0A, str(v).encode())


_KEYS: dict[str, bytes] = {}
#: Whole encoded KeyValues for string and bool values, which repeat from span to span (operation,
#: provider, model, team, route names): one dict lookup instead of an encoding. Bounded: cleared
#: when full. Attributes whose values are unique per span stay out of it.
_MEMO: dict[tuple[str, object, type], bytes] = {}
_MEMO_MAX = 8192
NO_MEMO_KEYS: set[str] = {"sluice.request_id"}


def _key_value(k: str, v: object) -> bytes:
    key = _KEYS.get(k)
    if key is None:
        key = _ld(0x0A, k.encode())
        if len(_KEYS) < 4096:
            _KEYS[k] = key
    return key + _ld(0x12, _any(v))  # KeyValue{key, value}


def _attributes(tag: int, attrs: Mapping[str, object] | None) -> bytes:
    if not attrs:
        return b""
    memo = _MEMO
    parts = []
    for k, v in attrs.items():
        t = type(v)
        if (t is str or t is bool) and k not in NO_MEMO_KEYS:
            mk = (k, v, t)
            field = memo.get(mk)
            if field is None:
                if len(memo) >= _MEMO_MAX:
                    memo.clear()
                field = memo[mk] = _ld(tag, _key_value(k, v))
            parts.append(field)
        else:
            parts.append(_ld(tag, _key_value(k, v)))
    return b"".join(parts)


def _span(s: ReadableSpan) -> bytes:
    ctx = s.context
    assert ctx is not None
    out = [
        b"\x0a\x10" + ctx.trace_id.to_bytes(16, "big"),
        b"\x12\x08" + ctx.span_id.to_bytes(8, "big"),
    ]
    if s.parent is not None:
        out.append(b"\x22\x08" + s.parent.span_id.to_bytes(8, "big"))
    out.append(_ld(0x2A, s.name.encode()))
    out.append(b"\x30" + _varint(s.kind.value + 1))  # OTLP's SpanKind counts from UNSPECIFIED = 0
    out.append(b"\x39" + _pack_fixed64(s.start_time or 0))
    out.append(b"\x41" + _pack_fixed64(s.end_time or 0))
    out.append(_attributes(0x4A, s.attributes))
    status = s.status
    if status.status_code is StatusCode.UNSET:
        out.append(b"\x7a\x00")  # an empty Status, as the SDK's encoder writes it
    else:
        msg = _ld(0x12, status.description.encode()) if status.description else b""
        out.append(_ld(0x7A, msg + b"\x18" + _varint(status.status_code.value)))
    # flags (fixed32): "has is_remote", and "is remote" when the parent came from another process
    remote = s.parent is not None and s.parent.is_remote
    out.append(b"\x85\x01" + (_FLAGS_REMOTE if remote else _FLAGS_LOCAL))
    return b"".join(out)


def encode_spans(spans: Iterable[ReadableSpan]) -> bytes:
    """An ExportTraceServiceRequest: one ResourceSpans per resource, one ScopeSpans per scope."""
    groups: dict[int, tuple[ReadableSpan, dict[tuple[str, str], list[bytes]]]] = {}
    for s in spans:
        entry = groups.get(id(s.resource))
        if entry is None:
            entry = groups[id(s.resource)] = (s, {})
        scope = s.instrumentation_scope
        key = (scope.name, scope.version or "") if scope is not None else ("", "")
        entry[1].setdefault(key, []).append(_span(s))
    out = []
    for first, scopes in groups.values():
        body = [_ld(0x0A, _attributes(0x0A, first.resource.attributes))]  # Resource{attributes}
        for (name, version), encoded in scopes.items():
            scope_msg = _ld(0x0A, name.encode()) + (_ld(0x12, version.encode()) if version else b"")
            body.append(_ld(0x12, _ld(0x0A, scope_msg) + b"".join(_ld(0x12, e) for e in encoded)))
        out.append(_ld(0x0A, b"".join(body)))
    return b"".join(out)
