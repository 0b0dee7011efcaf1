"""The contract every limit-state backend (memory, Redis, the outage-tolerant wrapper) keeps."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeAlias

from sluice.limits.model import Admission, BudgetCheck, BudgetUsage, Settlement, SpendChange, Verdict

SpendListener: TypeAlias = Callable[[Sequence[SpendChange]], None]


class LimitState(Protocol):
    """Shared counters for rate limits, concurrency and budgets.

    * ``admit`` checks every rate and budget check of the admission and, only if all pass, records
      them all — one atomic step, so concurrent admissions (across processes for shared backends)
      can never together pass a limit. It returns which check failed otherwise; it never raises for
      a refusal. Shared backends raise :class:`sluice.errors.ServiceUnavailable` when they cannot
      answer (and the policy says to fail closed).
    * ``settle`` releases the concurrency slots and budget reservations of an admitted ticket,
      corrects its token weight to what was really used, and adds the real cost to spend. It never
      raises and never blocks: shared backends apply it in the background and retry after an
      outage. ``on_spend`` is called once with each budget's spend before and after.
    * ``extend`` adds ``extra_nano`` to a ticket's budget reservations if every budget still has
      room; returns whether it did.
    * ``flush`` waits for background settlements; ``close`` flushes and frees connections.
    """

    async def admit(self, adm: Admission) -> Verdict: ...

    def settle(self, s: Settlement, backend: str, on_spend: SpendListener | None = None) -> None: ...

    async def extend(
        self, ticket_id: str, budgets: Sequence[BudgetCheck], extra_nano: int, now: float, backend: str
    ) -> bool: ...

    async def usage(self, budgets: Sequence[BudgetCheck], now: float) -> list[BudgetUsage]: ...

    async def in_flight(self, keys: Sequence[str], now: float) -> list[int]:
        """Concurrency slots held at each rate key (for tests and the admin view)."""
        ...

    async def budget_keys(self, prefix: str) -> list[str]:
        """Budget keys with state that start with ``prefix`` (to list end users' budgets)."""
        ...

    async def flush(self) -> None: ...

    async def close(self) -> None: ...
