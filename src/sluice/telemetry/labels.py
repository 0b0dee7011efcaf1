"""Metric label values, bounded by the policy: a team, route, model, provider or guardrail name the
policy declares is kept; anything else becomes ``other``, and a missing value ``none``. Kinds and
outcomes come from closed lists. Never a key, a user, a prompt or a free-form tag."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

OTHER: Final = "other"
NONE: Final = "none"

#: Error kinds a label may carry (gateway and provider kinds, see :mod:`sluice.errors`).
ERROR_KINDS: Final = frozenset(
    {
        "auth", "bad_request", "not_found", "rate_limited", "overloaded", "timeout", "server",
        "context_window", "content_filter", "connection", "bad_response", "permission", "too_large",
        "unsupported_media_type", "internal", "unavailable", "client_closed", "guardrail",
    }
)  # fmt: skip
ERROR_SOURCES: Final = frozenset({"gateway", "provider", "client"})
LEVELS: Final = frozenset({"route", "team", "key", "user", "provider"})
LIMITS: Final = frozenset({"rpm", "tpm", "concurrent", "budget"})
CACHE_OUTCOMES: Final = frozenset({"hit", "semantic_hit", "miss", "bypass", "error"})
RELOAD_OUTCOMES: Final = frozenset({"applied", "unchanged", "refused"})
GUARDRAIL_STAGES: Final = frozenset({"input", "output"})
GUARDRAIL_VERDICTS: Final = frozenset({"allow", "redact", "block", "flag", "error"})
ENDPOINTS: Final = frozenset({"chat", "embeddings"})


def bounded(value: str | None, allowed: frozenset[str]) -> str:
    if value is None or value == "":
        return NONE
    return value if value in allowed else OTHER


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """The names the policy declares, read once per policy (start-up, reload)."""

    teams: frozenset[str] = frozenset()
    routes: frozenset[str] = frozenset()
    #: The names clients ask for (``models:`` keys).
    models: frozenset[str] = frozenset()
    #: Upstream model names of every target (what a provider served).
    served_models: frozenset[str] = frozenset()
    providers: frozenset[str] = frozenset()
    guardrails: frozenset[str] = frozenset()
    _memo: dict[tuple[str | None, str | None, str | None, str | None, str | None], tuple[str, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def of(
        cls,
        *,
        teams: Iterable[str] = (),
        routes: Iterable[str] = (),
        models: Iterable[str] = (),
        served_models: Iterable[str] = (),
        providers: Iterable[str] = (),
        guardrails: Iterable[str] = (),
    ) -> Vocabulary:
        return cls(
            frozenset(teams), frozenset(routes), frozenset(models), frozenset(served_models),
            frozenset(providers), frozenset(guardrails),
        )  # fmt: skip

    def team(self, v: str | None) -> str:
        return bounded(v, self.teams)

    def route(self, v: str | None) -> str:
        return bounded(v, self.routes)

    def model(self, v: str | None) -> str:
        return bounded(v, self.models)

    def served(self, v: str | None) -> str:
        return bounded(v, self.served_models)

    def provider(self, v: str | None) -> str:
        return bounded(v, self.providers)

    def guardrail(self, v: str | None) -> str:
        return bounded(v, self.guardrails)

    def request_labels(
        self, team: str | None, route: str | None, model: str | None, served: str | None, provider: str | None
    ) -> tuple[str, ...]:
        """(team, route, model, served model, provider), memoised: a request's labels are one
        dict lookup once its combination has been seen (the memo is bounded by the policy)."""
        key = (team, route, model, served, provider)
        hit = self._memo.get(key)
        if hit is None:
            hit = (self.team(team), self.route(route), self.model(model), self.served(served),
                   self.provider(provider))  # fmt: skip
            if len(self._memo) < 65536:  # unbounded raw inputs (unknown model names) stay unmemoised
                self._memo[key] = hit
        return hit
