"""JSON-lines logging to stderr: every line is one JSON object.

A line carries ``ts``, ``level``, ``logger``, ``msg``, the fields of its event (``extra={"event":
{...}}``, merged at the top level), and — when it is written while a request is being served —
that request's ``request_id`` and ``trace_id`` (from :data:`CURRENT`, set by accounting when the
request enters the pipeline). Log calls never receive credentials or payloads: see docs/security.md.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RequestIds:
    request_id: str
    trace_id: str | None = None


#: The request the running task serves (a task serves one request at a time).
CURRENT: ContextVar[RequestIds | None] = ContextVar("sluice_request", default=None)

_RESERVED = frozenset({"ts", "level", "logger", "msg", "error"})


def bind_request(request_id: str, trace_id: str | None) -> None:
    CURRENT.set(RequestIds(request_id, trace_id))


class JsonFormatter(logging.Formatter):
    """One JSON object a line. ``logger.info("access", extra={"fields": {...}})`` puts the fields
    into the line itself (encoded once), not a JSON string inside ``msg``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):  # structured lines (the access log): fields of the line itself
            for name, value in fields.items():
                line.setdefault(name, value)
        ids = CURRENT.get()
        if ids is not None:
            line["request_id"] = ids.request_id
            if ids.trace_id is not None:
                line["trace_id"] = ids.trace_id
        event = getattr(record, "event", None)
        if isinstance(event, dict):
            for k, v in event.items():
                if k not in _RESERVED:
                    line[k] = v
        if record.exc_info and record.exc_info[0] is not None:
            line["error"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}"
        return json.dumps(line, separators=(",", ":"), default=str)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The demo upstream (an aiohttp server) would log every call it serves; keep it quiet.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # The OTLP exporter logs every failed batch; Sluice logs an outage once (telemetry.tracing).
    logging.getLogger("opentelemetry").setLevel(logging.CRITICAL)
