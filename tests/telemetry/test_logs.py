"""JSON log lines: structured fields are encoded once, as fields of the line."""

from __future__ import annotations

import json
import logging

from sluice.telemetry.logs import JsonFormatter


def test_access_fields_are_part_of_the_line_not_a_string_in_it() -> None:
    record = logging.LogRecord("sluice.access", logging.INFO, __file__, 1, "access", None, None)
    record.fields = {"request_id": "req_1", "status": 200, "cost_usd": 0.0012, "level": "spoofed"}
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "access"
    assert line["status"] == 200 and line["cost_usd"] == 0.0012 and line["request_id"] == "req_1"
    assert line["level"] == "info"  # a field never overwrites the line's own keys
    assert '\\"' not in JsonFormatter().format(record)  # nothing double-encoded
