"""The pure algorithms, with generated schedules."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.limits.window import RPM_SLICE_S, BudgetAccount, Leases, SlidingLog

W = 60.0


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(1, 50),
    steps=st.lists(st.tuples(st.floats(0, 30), st.integers(0, 20)), min_size=1, max_size=200),
)
def test_sliding_log_never_exceeds_limit_in_any_window(limit, steps):
    log = SlidingLog()
    now = 0.0
    admitted: list[tuple[float, int]] = []
    for i, (dt, weight) in enumerate(steps):
        now += dt
        log.purge(now, W)
        if log.fits(weight, limit):
            log.add(now, weight, str(i))
            admitted.append((now, weight))
            # Every window ending at an admission holds at most `limit`.
            assert sum(w for t, w in admitted if t > now - W) <= limit
        else:
            wait = log.wait_for(weight, limit, now, W)
            assert 0 < wait <= W + 1e-9 or weight > limit
        assert log.total == sum(w for t, w in admitted if t > now - W)


def test_sliding_log_wait_and_correct():
    log = SlidingLog()
    log.add(0, 5, "a")
    log.add(10, 5, "b")
    assert log.wait_for(3, 10, 20, W) == 40  # "a" leaves at 60
    assert log.wait_for(8, 10, 20, W) == 50  # both must leave
    log.correct("a", 1)
    assert log.total == 6 and log.fits(4, 10)
    log.purge(60, W)
    assert log.total == 5 and log.reset_in(60, W) == 10
    log.correct("a", 100)  # gone from the window: nothing to correct
    assert log.total == 5


def test_leases_purge_in_deadline_order():
    leases = Leases()
    leases.add("a", 10, 1)
    leases.add("b", 20, 1)
    leases.grow("b", 2)
    leases.purge(15)
    assert list(leases.items) == ["b"] and leases.total == 3
    assert leases.remove("b") == 3 and leases.remove("b") == 0 and leases.total == 0


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(0, 1000),
    ops=st.lists(st.tuples(st.booleans(), st.integers(0, 200), st.floats(0, 1)), max_size=300),
)
def test_budget_never_overspent_when_settling_within_reservation(limit, ops):
    acct = BudgetAccount(limit, expires_at=1e12)
    held: list[tuple[str, int]] = []
    for i, (reserve, amount, used) in enumerate(ops):
        if reserve or not held:
            if acct.fits(amount):
                acct.reservations.add(str(i), 1e9, amount)
                held.append((str(i), amount))
        else:
            ident, reserved = held.pop(0)
            acct.reservations.remove(ident)
            acct.spent += int(reserved * used)
        assert acct.spent + acct.reserved <= max(limit, acct.spent)
        assert acct.spent <= limit


def test_budget_hard_and_soft():
    acct = BudgetAccount(100, 0)
    acct.reservations.add("a", 1e9, 60)
    assert not acct.fits(50) and not acct.hopeless(50)
    acct.spent = 60
    assert acct.hopeless(50)
    acct.spent = 100
    assert not acct.fits(0) and acct.hopeless(0)


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(1, 50),
    gaps=st.lists(st.floats(0, 2), min_size=1, max_size=300),
)
def test_coalesced_request_log_never_exceeds_limit_in_any_window(limit, gaps):
    """Requests/min logs merge admissions into slices; no 60 s span may still hold more than
    ``limit`` admissions, and memory stays one entry per slice."""
    log = SlidingLog()
    now = 0.0
    admitted: list[float] = []
    for dt in gaps:
        now += dt
        log.purge(now, W)
        if log.fits(1, limit):
            log.add_count(now, 1, RPM_SLICE_S)
            admitted.append(now)
            assert sum(1 for t in admitted if t > now - W) <= limit
        else:
            assert log.wait_for(1, limit, now, W) > 0
    assert log.total == sum(int(e[1]) for e in log.entries)


def test_coalesced_request_log_holds_one_entry_per_slice():
    log = SlidingLog()
    for i in range(10_000):
        log.add_count(i * 0.001, 1, RPM_SLICE_S)  # 1,000 requests/s for 10 s
    assert log.total == 10_000
    assert len(log.entries) <= 10 / RPM_SLICE_S + 1
    log.purge(10.0 + RPM_SLICE_S + W, W)  # slices are dated at their end
    assert log.total == 0 and not log.entries
