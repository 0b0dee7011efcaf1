"""In-process limit state: the embedded default (one process), and the local fallback during a
shared-state outage. Every method runs without awaiting, so each admission is atomic."""

from __future__ import annotations

from collections.abc import Sequence

from sluice.limits.model import (
    WINDOW_S,
    Admission,
    BudgetCheck,
    BudgetUsage,
    RateStatus,
    Settlement,
    SpendChange,
    Verdict,
)
from sluice.limits.state import SpendListener
from sluice.limits.window import RPM_SLICE_S, BudgetAccount, Leases, SlidingLog

#: Admissions between sweeps of idle keys (keeps memory bounded by active keys).
_SWEEP_EVERY = 20_000
#: Seconds a finished budget period's account is kept (late settlements still land in it).
_BUDGET_GRACE_S = 7 * 86400.0


class MemoryState:
    """:class:`~sluice.limits.state.LimitState` in process memory."""

    def __init__(self) -> None:
        self._rpm: dict[str, SlidingLog] = {}
        self._tpm: dict[str, SlidingLog] = {}
        self._slots: dict[str, Leases] = {}
        self._budgets: dict[str, BudgetAccount] = {}
        self._ops = 0

    # ------------------------------------------------------------------ admission

    async def admit(self, adm: Admission) -> Verdict:
        return self.admit_now(adm)

    def admit_now(self, adm: Admission) -> Verdict:
        now = adm.now
        refusal = self._check_rates(adm) or self._check_budgets(adm)
        if refusal is not None:
            return refusal
        statuses: list[RateStatus] = []
        for rc in adm.rates:
            req_left: int | None = None
            tok_left: int | None = None
            req_reset = tok_reset = 0.0
            if rc.rpm is not None:
                log = self._rpm[rc.key]
                log.add_count(now, 1, RPM_SLICE_S)
                req_left, req_reset = rc.rpm - log.total, log.reset_in(now, WINDOW_S)
            if rc.tpm is not None:
                log = self._tpm[rc.key]
                log.add(now, adm.tokens, adm.ticket_id)
                tok_left, tok_reset = rc.tpm - log.total, log.reset_in(now, WINDOW_S)
            if rc.concurrent is not None:
                self._slots[rc.key].add(adm.ticket_id, now + adm.lease_s, 1)
            statuses.append(RateStatus(req_left, req_reset, tok_left, tok_reset))
        for bc in adm.budgets:
            self._budgets[bc.key].reservations.add(adm.ticket_id, now + adm.lease_s, adm.cost_nano)
        self._ops += 1
        if self._ops % _SWEEP_EVERY == 0:
            self._sweep(now)
        return Verdict(True, rates=tuple(statuses))

    def _check_rates(self, adm: Admission) -> Verdict | None:
        now = adm.now
        for i, rc in enumerate(adm.rates):
            if rc.rpm is not None:
                log = self._rpm.get(rc.key) or self._rpm.setdefault(rc.key, SlidingLog())
                log.purge(now, WINDOW_S)
                if not log.fits(1, rc.rpm):
                    return Verdict(False, i, "rpm", log.wait_for(1, rc.rpm, now, WINDOW_S))
            if rc.tpm is not None:
                if adm.tokens > rc.tpm:
                    return Verdict(False, i, "tpm", WINDOW_S, hard=True)
                log = self._tpm.get(rc.key) or self._tpm.setdefault(rc.key, SlidingLog())
                log.purge(now, WINDOW_S)
                if not log.fits(adm.tokens, rc.tpm):
                    return Verdict(False, i, "tpm", log.wait_for(adm.tokens, rc.tpm, now, WINDOW_S))
            if rc.concurrent is not None:
                slots = self._slots.get(rc.key) or self._slots.setdefault(rc.key, Leases())
                slots.purge(now)
                if len(slots) >= rc.concurrent:
                    return Verdict(False, i, "concurrent", 1.0)
        return None

    def _check_budgets(self, adm: Admission) -> Verdict | None:
        for j, bc in enumerate(adm.budgets):
            acct = self._account(bc, adm.now)
            if not acct.fits(adm.cost_nano):
                return Verdict(False, j, "budget", 1.0, hard=acct.hopeless(adm.cost_nano))
        return None

    def _account(self, bc: BudgetCheck, now: float) -> BudgetAccount:
        acct = self._budgets.get(bc.key)
        if acct is None:
            acct = self._budgets[bc.key] = BudgetAccount(bc.limit_nano, bc.expires_at)
        acct.limit = bc.limit_nano
        acct.reservations.purge(now)
        return acct

    # ------------------------------------------------------------------ settlement

    def settle(self, s: Settlement, backend: str = "local", on_spend: SpendListener | None = None) -> None:
        changes = self.settle_now(s)
        if on_spend is not None and changes:
            on_spend(changes)

    def settle_now(self, s: Settlement) -> list[SpendChange]:
        for rc in s.rates:
            if rc.tpm is not None and s.tokens_actual != s.tokens_reserved:
                log = self._tpm.get(rc.key)
                if log is not None:
                    log.correct(s.ticket_id, s.tokens_actual)
            if rc.concurrent is not None:
                slots = self._slots.get(rc.key)
                if slots is not None:
                    slots.remove(s.ticket_id)
        changes: list[SpendChange] = []
        for bc in s.budgets:
            acct = self._budgets.get(bc.key)
            if acct is None:  # swept, or admitted elsewhere: spend still counts
                acct = self._budgets[bc.key] = BudgetAccount(bc.limit_nano, bc.expires_at)
            acct.reservations.remove(s.ticket_id)
            before = acct.spent
            acct.spent += s.cost_actual_nano
            changes.append(SpendChange(bc.key, before, acct.spent))
        return changes

    async def extend(
        self, ticket_id: str, budgets: Sequence[BudgetCheck], extra_nano: int, now: float, backend: str = ""
    ) -> bool:
        accounts = [self._account(bc, now) for bc in budgets]
        if not all(ticket_id in a.reservations.items and a.fits(extra_nano) for a in accounts):
            return False
        for acct in accounts:
            acct.reservations.grow(ticket_id, extra_nano)
        return True

    # ------------------------------------------------------------------ reading

    async def usage(self, budgets: Sequence[BudgetCheck], now: float) -> list[BudgetUsage]:
        out: list[BudgetUsage] = []
        for bc in budgets:
            acct = self._budgets.get(bc.key)
            if acct is None:
                out.append(BudgetUsage(0, 0))
            else:
                acct.reservations.purge(now)
                out.append(BudgetUsage(acct.spent, acct.reserved))
        return out

    async def in_flight(self, keys: Sequence[str], now: float) -> list[int]:
        out: list[int] = []
        for key in keys:
            slots = self._slots.get(key)
            if slots is not None:
                slots.purge(now)
            out.append(len(slots) if slots is not None else 0)
        return out

    async def budget_keys(self, prefix: str) -> list[str]:
        return [k for k in self._budgets if k.startswith(prefix)]

    async def flush(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def _sweep(self, now: float) -> None:
        for logs in (self._rpm, self._tpm):
            idle = []
            for key, log in logs.items():
                log.purge(now, WINDOW_S)
                if not log.entries:
                    idle.append(key)
            for key in idle:
                del logs[key]
        idle = []
        for key, slots in self._slots.items():
            slots.purge(now)
            if not slots:
                idle.append(key)
        for key in idle:
            del self._slots[key]
        horizon = now - _BUDGET_GRACE_S
        for key in [k for k, a in self._budgets.items() if a.expires_at < horizon and not a.reservations]:
            del self._budgets[key]
