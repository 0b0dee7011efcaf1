from __future__ import annotations

import math

import pytest

from sluice.telemetry.prom import GaugeCallback, Registry, merge, render
from tests.telemetry.promtext import parse, value
from tests.telemetry.tools import promtool


def _registry() -> Registry:
    r = Registry()
    c = r.counter("demo_requests_total", "Requests.", ("route", "status"))
    c.inc(("a", "2xx"))
    c.inc(("a", "2xx"))
    c.inc(("b", '5"x\\y\n'), 3)
    h = r.histogram("demo_duration_seconds", "Durations.", ("route",), (0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 2.0):
        h.observe(("a",), v)
    r.gauge(GaugeCallback("demo_depth", "Depth.", (), lambda: [((), 7.0)]))
    return r


def test_counter_histogram_and_gauge_render_and_parse_back() -> None:
    s = parse(render(_registry().snapshot()))
    assert value(s, "demo_requests_total", route="a", status="2xx") == 2
    # le is inclusive: 0.1 falls in the 0.1 bucket; buckets are cumulative
    assert value(s, "demo_duration_seconds_bucket", route="a", le="0.1") == 2
    assert value(s, "demo_duration_seconds_bucket", route="a", le="1") == 3
    assert value(s, "demo_duration_seconds_bucket", route="a", le="+Inf") == 4
    assert value(s, "demo_duration_seconds_count", route="a") == 4
    assert math.isclose(value(s, "demo_duration_seconds_sum", route="a"), 2.65)
    assert value(s, "demo_depth") == 7


def test_label_values_are_escaped() -> None:
    text = render(_registry().snapshot())
    assert 'status="5\\"x\\\\y\\n"' in text


def test_merge_adds_counters_and_histograms_and_takes_the_max_of_max_gauges() -> None:
    a, b = _registry(), _registry()
    b.gauge(GaugeCallback("demo_depth", "Depth.", (), lambda: [((), 1.0)]))
    a.gauge(GaugeCallback("demo_open", "Open.", (), lambda: [((), 0.0)], merge="max"))
    b.gauge(GaugeCallback("demo_open", "Open.", (), lambda: [((), 1.0)], merge="max"))
    s = parse(render(merge([a.snapshot(), b.snapshot()])))
    assert value(s, "demo_requests_total", route="a", status="2xx") == 4
    assert value(s, "demo_duration_seconds_bucket", route="a", le="+Inf") == 8
    assert value(s, "demo_depth") == 8
    assert value(s, "demo_open") == 1


def test_bucket_bounds_must_increase() -> None:
    with pytest.raises(ValueError):
        Registry().histogram("x_seconds", "x", (), (1.0, 0.5))


def test_promtool_accepts_the_exposition() -> None:
    out = promtool("check", "metrics", stdin=render(_registry().snapshot()))
    assert out.returncode == 0, out.stdout + out.stderr
