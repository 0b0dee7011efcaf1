"""A small Prometheus registry: counters, histograms and gauges keyed by label tuples, their text
exposition (format 0.0.4), and snapshots that several worker processes can merge.

Hand-written rather than ``prometheus_client`` because the hot path pays for every call: an
increment here is one dict lookup on a tuple the caller already built (about 0.1 µs), and nothing
is locked (the gateway is one event loop per process). Label values are never checked here: the
callers pass values from a closed vocabulary (see :mod:`sluice.telemetry.labels`).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from typing import Literal, TypeAlias

Labels: TypeAlias = tuple[str, ...]
#: How a gauge's samples from several workers combine: summed (a queue depth) or the largest (a
#: breaker that is open in any worker is open).
Merge: TypeAlias = Literal["sum", "max"]
#: name -> {"type", "help", "labels", "buckets"?, "merge"?, "samples": [[labels, value or counts]]}
Snapshot: TypeAlias = dict[str, dict[str, object]]


class Counter:
    __slots__ = ("help", "label_names", "name", "values")

    def __init__(self, name: str, help_text: str, label_names: Sequence[str]) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(label_names)
        self.values: dict[Labels, float] = {}

    def inc(self, labels: Labels, amount: float = 1.0) -> None:
        values = self.values
        values[labels] = values.get(labels, 0.0) + amount

    def get(self, labels: Labels) -> float:
        return self.values.get(labels, 0.0)


class Histogram:
    """Per label tuple: one count per bucket (not cumulative; rendered cumulative), then sum, count."""

    __slots__ = ("bounds", "help", "label_names", "name", "values")

    def __init__(
        self, name: str, help_text: str, label_names: Sequence[str], bounds: Sequence[float]
    ) -> None:
        if list(bounds) != sorted(set(bounds)):
            raise ValueError(f"{name}: bucket bounds must increase")
        self.name = name
        self.help = help_text
        self.label_names = tuple(label_names)
        self.bounds = tuple(float(b) for b in bounds)
        self.values: dict[Labels, list[float]] = {}

    def observe(self, labels: Labels, value: float) -> None:
        row = self.values.get(labels)
        if row is None:
            row = self.values[labels] = [0.0] * (len(self.bounds) + 3)
        row[bisect_left(self.bounds, value)] += 1  # index len(bounds) is the +Inf bucket
        row[-2] += value
        row[-1] += 1


class GaugeCallback:
    """A value read when the registry is collected (queue depths, breaker states), a gauge or a
    counter kept by its owner (records spooled)."""

    __slots__ = ("help", "kind", "label_names", "merge", "name", "read")

    def __init__(
        self,
        name: str,
        help_text: str,
        label_names: Sequence[str],
        read: Callable[[], Iterable[tuple[Labels, float]]],
        merge: Merge = "sum",
        kind: Literal["gauge", "counter"] = "gauge",
    ) -> None:
        self.kind = kind
        self.name = name
        self.help = help_text
        self.label_names = tuple(label_names)
        self.read = read
        self.merge = merge


class Registry:
    def __init__(self) -> None:
        self._counters: list[Counter] = []
        self._histograms: list[Histogram] = []
        self._gauges: dict[str, GaugeCallback] = {}

    def counter(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> Counter:
        c = Counter(name, help_text, label_names)
        self._counters.append(c)
        return c

    def histogram(
        self, name: str, help_text: str, label_names: Sequence[str], bounds: Sequence[float]
    ) -> Histogram:
        h = Histogram(name, help_text, label_names, bounds)
        self._histograms.append(h)
        return h

    def gauge(self, gauge: GaugeCallback) -> None:
        """Register (or replace, on a policy reload) a gauge read at collection time."""
        self._gauges[gauge.name] = gauge

    def snapshot(self) -> Snapshot:
        """Everything now, as plain data (JSON-encodable) that :func:`merge` can add up."""
        out: Snapshot = {}
        for c in self._counters:
            out[c.name] = {"type": "counter", "help": c.help, "labels": list(c.label_names),
                           "samples": [[list(k), v] for k, v in c.values.items()]}  # fmt: skip
        for h in self._histograms:
            out[h.name] = {"type": "histogram", "help": h.help, "labels": list(h.label_names),
                           "buckets": list(h.bounds), "samples": [[list(k), list(v)] for k, v in h.values.items()]}  # fmt: skip
        for g in self._gauges.values():
            samples = [[list(k), float(v)] for k, v in g.read()]
            out[g.name] = {"type": g.kind, "help": g.help, "labels": list(g.label_names),
                           "merge": g.merge, "samples": samples}  # fmt: skip
        return out


def merge(snapshots: Iterable[Snapshot]) -> Snapshot:
    """Add counters and histograms up across workers; gauges by their ``merge`` rule."""
    out: Snapshot = {}
    acc: dict[str, dict[tuple[str, ...], object]] = {}
    for snap in snapshots:
        for name, fam in snap.items():
            if name not in out:
                out[name] = {k: v for k, v in fam.items() if k != "samples"}
                acc[name] = {}
            elif out[name].get("buckets") != fam.get("buckets") or out[name]["type"] != fam["type"]:
                continue  # a worker of another version mid-rollout: its family is left out
            rows = acc[name]
            mode = fam.get("merge", "sum")
            for labels, value in fam["samples"]:  # type: ignore[attr-defined]
                key = tuple(labels)
                old = rows.get(key)
                rows[key] = _combine(old, value, mode)
    for name, rows in acc.items():
        out[name]["samples"] = [[list(k), v] for k, v in rows.items()]
    return out


def _combine(old: object, new: object, mode: object) -> object:
    if old is None:
        return list(new) if isinstance(new, list) else new
    if isinstance(old, list) and isinstance(new, list):
        return [a + b for a, b in zip(old, new, strict=True)] if len(old) == len(new) else old
    assert isinstance(old, float | int) and isinstance(new, float | int)
    return max(old, new) if mode == "max" else old + new


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=False)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v))


def render(snapshot: Snapshot) -> str:
    """The Prometheus text exposition format (``text/plain; version=0.0.4``)."""
    lines: list[str] = []
    for name in sorted(snapshot):
        fam = snapshot[name]
        kind = fam["type"]
        names = fam["labels"]
        assert isinstance(names, list)
        lines.append(f"# HELP {name} {_escape(str(fam['help']))}")
        lines.append(f"# TYPE {name} {kind}")
        samples = sorted(fam["samples"], key=lambda s: s[0])  # type: ignore[call-overload]
        for labels, value in samples:
            if kind != "histogram":
                lines.append(f"{name}{_labels(names, labels)} {_num(value)}")
                continue
            bounds = fam["buckets"]
            assert isinstance(bounds, list)
            cumulative = 0.0
            for i, le in enumerate([*bounds, math.inf]):
                cumulative += value[i]
                le_label = 'le="' + _num(float(le)) + '"'
                lines.append(f"{name}_bucket{_labels(names, labels, le_label)} {_num(cumulative)}")
            lines.append(f"{name}_sum{_labels(names, labels)} {_num(value[-2])}")
            lines.append(f"{name}_count{_labels(names, labels)} {_num(value[-1])}")
    return "\n".join(lines) + "\n"
