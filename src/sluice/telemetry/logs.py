"""JSON-lines logging to stderr. Log calls never receive credentials: see SECURITY in docs."""

from __future__ import annotations

import json
import logging
import sys
import time


class JsonFormatter(logging.Formatter):
    """One JSON object a line. ``logger.info("access", extra={"fields": {...}})`` puts the fields
    into the line itself (encoded once), not a JSON string inside ``msg``."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
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
        if record.exc_info and record.exc_info[0] is not None:
            line["error"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}"
        return json.dumps(line, separators=(",", ":"))


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The demo upstream (an aiohttp server) would log every call it serves; keep it quiet.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
