"""``feedback:`` — the metrics callers may report on answers (``POST /v1/feedback``).

Each metric has a type (``boolean``: true/false; ``float``: a number, optionally within
``min``..``max``) and the direction that is better (``optimize: max`` or ``min``). A report names a
declared metric; an unknown metric or a value of the wrong type is refused with a 400.
"""

from __future__ import annotations

import math
from typing import Literal

import msgspec


class FeedbackMetric(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    type: Literal["boolean", "float"]
    optimize: Literal["max", "min"] = "max"
    min: float | None = None
    max: float | None = None

    def check(self, value: object) -> str | None:
        """Why ``value`` is not a valid report of this metric (None when it is)."""
        if self.type == "boolean":
            return None if isinstance(value, bool) else "must be true or false"
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return "must be a number"
        if self.min is not None and value < self.min:
            return f"must be at least {self.min:g}"
        if self.max is not None and value > self.max:
            return f"must be at most {self.max:g}"
        return None


class FeedbackConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    metrics: dict[str, FeedbackMetric] = msgspec.field(default_factory=dict)


def check_feedback(cfg: FeedbackConfig) -> tuple[str, str] | None:
    """(path, problem) for a metric the schema cannot refuse on its own."""
    for name, m in cfg.metrics.items():
        path = f"$.feedback.metrics.{name}"
        if m.type == "boolean" and (m.min is not None or m.max is not None):
            return path, "min/max only apply to float metrics"
        if m.min is not None and m.max is not None and m.min >= m.max:
            return path, "min must be below max"
        if not name or len(name) > 64:
            return path, "a metric name is 1 to 64 characters"
    return None
