"""``models.<name>.adaptive`` — the parameters of ``strategy: adaptive`` (see ``routing.adaptive``).

``metric`` names a metric declared under ``feedback.metrics`` (a float metric needs ``min`` and
``max``, so its values can be scaled to 0..1). Until every target has ``min_samples`` reports,
traffic is split evenly; afterwards Thompson sampling shifts it toward the better target, and
each target keeps at least ``min_share`` of it. ``memory`` is how many recent reports (of every
target of the metric together) the statistics remember: older ones fade geometrically, so when
quality changes the shares follow within about two ``memory``'s worth of reports.
``cost_weight`` / ``latency_weight`` subtract the target's estimated cost / measured latency,
each scaled to 0..1 against the model's most expensive / slowest target, from its sampled quality.
"""

from __future__ import annotations

from typing import Annotated

import msgspec


class AdaptiveConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    metric: str
    min_samples: Annotated[int, msgspec.Meta(ge=1)] = 50
    min_share: Annotated[float, msgspec.Meta(ge=0, le=0.5)] = 0.05
    memory: Annotated[int, msgspec.Meta(ge=10)] = 100
    cost_weight: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    latency_weight: Annotated[float, msgspec.Meta(ge=0)] = 0.0
