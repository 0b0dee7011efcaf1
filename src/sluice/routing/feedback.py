"""Feedback on answers: validating a report, and the report of what callers said.

``POST /v1/feedback`` checks a report against ``feedback.metrics`` (:func:`validate`), the server
stores it with the rated request's route, model, target and tags, and ``sluice feedback report`` /
``GET /admin/feedback`` summarise the stored rows (:func:`summarise`): per group, the count, the
mean and a 95% confidence interval — Wilson's interval for boolean metrics (the share of true),
the normal approximation ``mean ± 1.96·s/√n`` for float metrics.

Hook: :func:`negative` tells a later room (the response cache, once it exists on the branch) which
reports count as negative, so it can evict the cached answer the report rated.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from sluice.config.feedback import FeedbackConfig, FeedbackMetric
from sluice.errors import BadRequest
from sluice.store.feedback import FeedbackRow

FeedbackGroup = Literal["route", "model", "target", "tag", "metric"]
GROUP_BY: tuple[FeedbackGroup, ...] = ("metric", "route", "model", "target", "tag")
_Z = 1.96
MAX_COMMENT = 2000
MAX_TAGS = 16


class FeedbackIn(msgspec.Struct, forbid_unknown_fields=True):
    request_id: str
    metric: str
    value: bool | float | int
    comment: str | None = None
    tags: list[str] | None = None


def validate(cfg: FeedbackConfig, body: bytes) -> tuple[FeedbackIn, float]:
    """The report and its numeric value; a 400 naming the problem otherwise."""
    try:
        report = msgspec.json.decode(body, type=FeedbackIn)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"invalid feedback: {exc}") from None
    except msgspec.DecodeError:
        raise BadRequest("the body is not valid JSON") from None
    metric = cfg.metrics.get(report.metric)
    if metric is None:
        known = ", ".join(sorted(cfg.metrics)) or "none are declared under feedback.metrics"
        raise BadRequest(f"unknown metric '{report.metric}' (known: {known})", param="metric")
    problem = metric.check(report.value)
    if problem is not None:
        raise BadRequest(f"'{report.metric}' is a {metric.type} metric: value {problem}", param="value")
    if report.comment is not None and len(report.comment) > MAX_COMMENT:
        raise BadRequest(f"comment is longer than {MAX_COMMENT} characters", param="comment")
    if report.tags is not None and (len(report.tags) > MAX_TAGS or any(len(t) > 64 for t in report.tags)):
        raise BadRequest(f"at most {MAX_TAGS} tags of up to 64 characters", param="tags")
    return report, float(report.value)


def negative(metric: FeedbackMetric, value: float) -> bool:
    """Whether a report says the answer was bad: false, or the worse half of the metric's range."""
    if metric.type == "boolean":
        return (value < 0.5) if metric.optimize == "max" else (value >= 0.5)
    if metric.min is None or metric.max is None:
        return False
    mid = (metric.min + metric.max) / 2
    return value < mid if metric.optimize == "max" else value > mid


@dataclass
class _Acc:
    n: int = 0
    total: float = 0.0
    squares: float = 0.0

    def add(self, v: float) -> None:
        self.n += 1
        self.total += v
        self.squares += v * v


def _keys(row: FeedbackRow, by: FeedbackGroup) -> list[str]:
    if by == "tag":
        return list(json.loads(row.tags or "[]")) or ["(none)"]
    if by == "target":
        return [f"{row.provider}/{row.target_model}"]
    value = {"metric": row.metric, "route": row.route, "model": row.model}[by]
    return [value if value is not None else "(none)"]


def summarise(
    rows: list[FeedbackRow], cfg: FeedbackConfig, by: FeedbackGroup = "metric"
) -> list[dict[str, Any]]:
    """Count, mean and 95% interval per (metric, group)."""
    groups: dict[tuple[str, str], _Acc] = {}
    for row in rows:
        for key in _keys(row, by):
            groups.setdefault((row.metric, key), _Acc()).add(row.value)
    out = []
    for (metric, key), acc in sorted(groups.items()):
        m = cfg.metrics.get(metric)
        low, high = _interval(acc, m is not None and m.type == "boolean")
        out.append({
            "metric": metric, by: key, "count": acc.n, "mean": round(acc.total / acc.n, 4),
            "ci95_low": round(low, 4), "ci95_high": round(high, 4),
        })  # fmt: skip
    return out


def _interval(acc: _Acc, boolean: bool) -> tuple[float, float]:
    n = acc.n
    mean = acc.total / n
    if boolean:  # Wilson score interval
        denom = 1 + _Z * _Z / n
        centre = (mean + _Z * _Z / (2 * n)) / denom
        half = _Z * math.sqrt(mean * (1 - mean) / n + _Z * _Z / (4 * n * n)) / denom
        return centre - half, centre + half
    if n < 2:
        return mean, mean
    var = max(0.0, (acc.squares - n * mean * mean) / (n - 1))
    half = _Z * math.sqrt(var / n)
    return mean - half, mean + half
