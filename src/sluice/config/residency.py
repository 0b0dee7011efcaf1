"""Data residency and compliance: provider ``labels`` and the ``require`` rules that filter targets.

A provider declares labels (``labels: {region: eu, compliance: [self-hosted, hipaa]}``); a label's
value is one string or a list of them. A requirement maps a label name to the values it accepts
(``require: {region: [eu, us]}``). A provider satisfies a requirement when, for every label name
in it, at least one of the provider's values for that label is among the accepted ones; a provider
without the label never satisfies it. Requirements come from a team, a route and the request
itself; all of them must hold at once (so a request can only narrow what its team and route
allow, never widen it).

:func:`requirements_allow` is the one check every room uses (routing for primaries, fallbacks,
retries and shadows; the cache for its upstream embedder and for hits written elsewhere).

A request states its requirements in the ``x-sluice-require`` header or ``metadata.require``:
``region=eu|us; compliance=hipaa`` — ``;`` separates label names, ``|`` (or ``,``) separates the
values accepted for one name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TypeAlias

from sluice.errors import BadRequest

#: A provider's labels as written in the policy: each value one string or a list of strings.
LabelValue: TypeAlias = str | list[str]
Labels: TypeAlias = dict[str, LabelValue]
#: A ``require:`` block as written in the policy: label name -> accepted values.
RequireSpec: TypeAlias = dict[str, LabelValue]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_MAX_HEADER = 1024
_MAX_NAMES = 8
_MAX_VALUES = 16


@dataclass(frozen=True, slots=True)
class Requirement:
    """One rule: the label ``name`` must take one of ``accepted``; ``source`` says who asked."""

    name: str
    accepted: frozenset[str]
    source: str

    def describe(self) -> str:
        return f"{self.name} in [{', '.join(sorted(self.accepted))}] (required by {self.source})"


Requirements: TypeAlias = tuple[Requirement, ...]


def label_sets(labels: Mapping[str, LabelValue] | None) -> dict[str, frozenset[str]]:
    """Labels as name -> set of values (a scalar is a set of one)."""
    out: dict[str, frozenset[str]] = {}
    for name, value in (labels or {}).items():
        out[name] = frozenset((value,) if isinstance(value, str) else value)
    return out


def requirements_from(spec: Mapping[str, LabelValue] | None, source: str) -> Requirements:
    """A policy ``require:`` block as requirements attributed to ``source`` (e.g. "team 'billing'")."""
    return tuple(
        Requirement(name, frozenset((v,) if isinstance(v, str) else v), source)
        for name, v in (spec or {}).items()
    )


def requirements_allow(
    provider_labels: Mapping[str, frozenset[str]] | Mapping[str, LabelValue] | None,
    requirements: Iterable[Requirement],
) -> bool:
    """Whether a provider with these labels satisfies every requirement (no requirements: True).

    ``provider_labels`` may be the policy's mapping (``ProviderConfig.labels``) or the output of
    :func:`label_sets`.
    """
    return unmet(provider_labels, requirements) is None


def unmet(
    provider_labels: Mapping[str, frozenset[str]] | Mapping[str, LabelValue] | None,
    requirements: Iterable[Requirement],
) -> Requirement | None:
    """The first requirement these labels do not satisfy, or None."""
    labels = provider_labels or {}
    for req in requirements:
        have = labels.get(req.name)
        if have is None:
            return req
        if isinstance(have, str):
            if have not in req.accepted:
                return req
        elif req.accepted.isdisjoint(have):
            return req
    return None


def check_spec(spec: Mapping[str, LabelValue], what: str) -> str | None:
    """Why a labels / require block is malformed (None when it is fine)."""
    for name, value in spec.items():
        if not _NAME.match(name):
            return f"{what}: label name '{name}' must be lowercase letters, digits, '_', '-', '.'"
        values = [value] if isinstance(value, str) else value
        if not values:
            return f"{what}: '{name}' needs at least one value"
        if any(not v or len(v) > 128 for v in values):
            return f"{what}: '{name}' has an empty or overlong value"
    return None


def parse_request_requirements(text: str | None, source: str = "the request") -> Requirements:
    """``region=eu|us; compliance=hipaa`` → requirements. Malformed text is a 400 naming it."""
    if not text:
        return ()
    if len(text) > _MAX_HEADER:
        raise BadRequest(
            f"x-sluice-require is longer than {_MAX_HEADER} characters", param="x-sluice-require"
        )
    out: list[Requirement] = []
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        name, eq, raw = part.partition("=")
        name = name.strip().lower()
        values = frozenset(v.strip() for v in re.split(r"[|,]", raw) if v.strip())
        if not eq or not _NAME.match(name) or not values or len(values) > _MAX_VALUES:
            raise BadRequest(
                "x-sluice-require must look like 'region=eu|us; compliance=hipaa'", param="x-sluice-require"
            )
        out.append(Requirement(name, values, source))
    if len(out) > _MAX_NAMES:
        raise BadRequest(f"x-sluice-require names more than {_MAX_NAMES} labels", param="x-sluice-require")
    return tuple(out)
