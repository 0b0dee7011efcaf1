"""JSON log lines: one object a line, structured fields at its top (encoded once), request ids."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from sluice.config.routing import BreakerConfig
from sluice.routing.health import Breaker
from sluice.telemetry.logs import CURRENT, JsonFormatter, bind_request
from sluice.telemetry.metrics import METRICS


def _record(msg: str, event: dict[str, object] | None = None) -> logging.LogRecord:
    rec = logging.LogRecord("sluice.test", logging.WARNING, __file__, 1, msg, (), None)
    if event is not None:
        rec.event = event
    return rec


def test_a_line_is_one_json_object_with_the_event_fields_at_the_top() -> None:
    line = json.loads(
        JsonFormatter().format(_record("upstream attempt failed", {"provider": "up", "msg": "x"}))
    )
    assert (
        line["msg"] == "upstream attempt failed" and line["provider"] == "up" and line["level"] == "warning"
    )


async def test_lines_written_while_serving_a_request_carry_its_ids() -> None:
    async def serve(rid: str) -> dict[str, object]:
        bind_request(rid, "ab" * 16)
        await asyncio.sleep(0)
        return dict(json.loads(JsonFormatter().format(_record("hi"))))

    a, b = await asyncio.gather(serve("req-a"), serve("req-b"))  # each task its own request
    assert (a["request_id"], b["request_id"]) == ("req-a", "req-b") and a["trace_id"] == "ab" * 16
    assert CURRENT.get() is None
    assert "request_id" not in json.loads(JsonFormatter().format(_record("outside")))


def test_breaker_opening_and_closing_are_logged_once_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    b = Breaker(BreakerConfig(failures=2, error_ratio=None, cooldown_s=1.0), lambda: now[0], ("up", "m-x"))
    key = (METRICS.vocab.provider("up"), METRICS.vocab.served("m-x"), "open")
    opened = METRICS.breaker.get(key)
    with caplog.at_level(logging.WARNING, logger="sluice.routing"):
        for _ in range(4):  # two failures open it; failures while open are stragglers
            b.failure(b.admit() or "pass", "server")
        now[0] = 2.0
        b.success(b.admit())  # the probe closes it
    msgs = [r.getMessage() for r in caplog.records]
    assert msgs == ["circuit breaker opened for up/m-x", "circuit breaker closed for up/m-x"]
    assert caplog.records[0].event["last_error"] == "server"  # type: ignore[attr-defined]
    assert METRICS.breaker.get(key) == opened + 1


def test_access_fields_are_part_of_the_line_not_a_string_in_it() -> None:
    record = logging.LogRecord("sluice.access", logging.INFO, __file__, 1, "access", None, None)
    record.fields = {"request_id": "req_1", "status": 200, "cost_usd": 0.0012, "level": "spoofed"}
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "access"
    assert line["status"] == 200 and line["cost_usd"] == 0.0012 and line["request_id"] == "req_1"
    assert line["level"] == "info"  # a field never overwrites the line's own keys
    assert '\\"' not in JsonFormatter().format(record)  # nothing double-encoded
