"""Residency requirements applied to a request's targets (the rule itself: ``config.residency``).

The Router filters every candidate list through :meth:`Residency.allowed` before the attempt loop
sees it, so a target that fails a requirement is never a primary, a fallback, a retry or a shadow.
When no target is left, the request is refused with a 400 that names the requirement(s) unmet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sluice.config.model import Config
from sluice.config.residency import Requirement, Requirements, label_sets, requirements_from, unmet
from sluice.errors import BadRequest
from sluice.routing.strategies import Option
from sluice.schema.context import RequestContext

#: The code of the refusal when no target meets the requirements.
UNMET_CODE = "requirement_not_met"


class Residency:
    """Built once per policy: label sets per provider, requirements per team and route."""

    __slots__ = ("_labels", "_routes", "_teams")

    def __init__(self, config: Config) -> None:
        self._labels: dict[str, dict[str, frozenset[str]]] = {
            name: label_sets(p.labels) for name, p in config.providers.items()
        }
        self._teams: dict[str, Requirements] = {
            name: requirements_from(t.require, f"team '{name}'")
            for name, t in config.teams.items()
            if t.require
        }
        self._routes: dict[str, Requirements] = {
            r.name: requirements_from(r.require, f"route '{r.name}'") for r in config.routes if r.require
        }

    def labels(self, provider: str) -> Mapping[str, frozenset[str]]:
        return self._labels.get(provider, {})

    def of(self, ctx: RequestContext) -> Requirements:
        """Every requirement the request must meet: its team's, its route's and its own."""
        team = ctx.principal.team if ctx.principal is not None else None
        reqs = self._teams.get(team, ()) if team is not None else ()
        if ctx.route is not None:
            reqs = reqs + self._routes.get(ctx.route, ())
        return reqs + ctx.require if ctx.require else reqs

    def allowed(self, options: Sequence[Option], reqs: Requirements, ctx: RequestContext) -> list[Option]:
        """The options whose provider meets every requirement (in order); raises when none does."""
        if not reqs:
            return list(options)
        kept: list[Option] = []
        missed: dict[Requirement, None] = {}
        for opt in options:
            miss = unmet(self._labels.get(opt.target.provider), reqs)
            if miss is None:
                kept.append(opt)
            else:
                missed[miss] = None
        if missed:
            excluded = len(options) - len(kept)
            what = "; ".join(r.describe() for r in missed)
            note = f"{excluded} target(s) excluded by {what}"
            ctx.route_reason = f"{ctx.route_reason}; {note}" if ctx.route_reason else note
        if not kept and options:
            raise BadRequest(
                f"no target of model '{ctx.requested_model}' (or its fallbacks) meets the data "
                f"residency requirement {' and '.join(r.describe() for r in missed)}",
                code=UNMET_CODE,
            )
        return kept
