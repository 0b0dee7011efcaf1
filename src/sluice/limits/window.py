"""The limit algorithms, pure and clock-free (every call is handed ``now``).

* :class:`SlidingLog` — a sliding window: an entry per admitted request with its weight (1 for
  requests, tokens for tokens/min). "100 requests/min" means no 60-second span ever holds more
  than 100 admissions, with no burst at window edges. A weight can be corrected after the fact (a
  token reservation settled to real usage). Requests/min logs coalesce admissions into 50 ms
  slices dated at their end, so a slice never leaves before any of its members: never over the
  limit, at most 50 ms stricter.
* :class:`Leases` — holders of a resource with an amount and a deadline: concurrency slots (amount
  1) and budget reservations (amount in nano-dollars). A holder that vanishes without releasing
  (crashed process) is dropped at its deadline. Deadlines are ``now + lease`` with one lease
  length per backend, so insertion order is deadline order and purging is O(expired).
* :class:`BudgetAccount` — spend plus reservations for one budget period.

The Redis Lua scripts implement exactly these rules on sorted sets and hashes.
"""

from __future__ import annotations

from collections import OrderedDict, deque

#: Requests/min logs hold one entry per slice of this many seconds.
RPM_SLICE_S = 0.05


class SlidingLog:
    __slots__ = ("entries", "index", "slice_start", "total")

    def __init__(self) -> None:
        # [time, weight, id]; lists so a settled weight can be corrected in place.
        self.entries: deque[list[float | int | str]] = deque()
        self.index: dict[str, list[float | int | str]] = {}
        self.total = 0
        self.slice_start = 0.0

    def purge(self, now: float, window: float) -> None:
        horizon = now - window
        entries = self.entries
        while entries and float(entries[0][0]) <= horizon:
            _, weight, ident = entries.popleft()
            self.total -= int(weight)
            self.index.pop(str(ident), None)

    def fits(self, weight: int, limit: int) -> bool:
        return self.total + weight <= limit

    def add(self, now: float, weight: int, ident: str) -> None:
        entry: list[float | int | str] = [now, weight, ident]
        self.entries.append(entry)
        self.index[ident] = entry
        self.total += weight

    def add_count(self, now: float, weight: int, slice_s: float) -> None:
        """For a log that is never corrected (requests/min): admissions less than ``slice_s``
        after the newest entry began join it. The entry is dated at the slice's end, which no
        member is later than, so it leaves the window no earlier than its last member (the limit
        is never exceeded) and at most ``slice_s`` later. Memory is one entry per slice, not one
        per request (a high limit at thousands of requests a second would otherwise hold every
        one of them for a minute); the Redis script never rewrites a slice's date either."""
        entries = self.entries
        if entries and abs(now - self.slice_start) < slice_s:
            last = entries[-1]
            last[1] = int(last[1]) + weight
        else:
            entries.append([now + slice_s, weight, ""])
            self.slice_start = now
        self.total += weight

    def correct(self, ident: str, weight: int) -> None:
        """Set an entry's weight (if it is still in the window)."""
        entry = self.index.get(ident)
        if entry is not None:
            self.total += weight - int(entry[1])
            entry[1] = weight

    def reset_in(self, now: float, window: float) -> float:
        """Seconds until the oldest entry leaves the window (0 when empty)."""
        if not self.entries:
            return 0.0
        return max(0.0, float(self.entries[0][0]) + window - now)

    def wait_for(self, weight: int, limit: int, now: float, window: float) -> float:
        """Seconds until ``weight`` more would fit; ``window`` if it never would within one."""
        excess = self.total + weight - limit
        if excess <= 0:
            return 0.0
        freed = 0
        for t, w, _ in self.entries:
            freed += int(w)
            if freed >= excess:
                # Never 0: float rounding can keep an entry that is due to leave exactly now.
                return max(0.001, float(t) + window - now)
        return window


class Leases:
    __slots__ = ("items", "total")

    def __init__(self) -> None:
        self.items: OrderedDict[str, list[float | int]] = OrderedDict()
        self.total = 0

    def purge(self, now: float) -> None:
        items = self.items
        while items:
            deadline, amount = next(iter(items.values()))
            if deadline > now:
                break
            items.popitem(last=False)
            self.total -= int(amount)

    def add(self, ident: str, deadline: float, amount: int) -> None:
        self.items[ident] = [deadline, amount]
        self.total += amount

    def grow(self, ident: str, amount: int) -> None:
        held = self.items.get(ident)
        if held is not None:
            held[1] = int(held[1]) + amount
            self.total += amount

    def remove(self, ident: str) -> int:
        held = self.items.pop(ident, None)
        if held is None:
            return 0
        self.total -= int(held[1])
        return int(held[1])

    def __len__(self) -> int:
        return len(self.items)


class BudgetAccount:
    __slots__ = ("expires_at", "limit", "reservations", "spent")

    def __init__(self, limit: int, expires_at: float) -> None:
        self.limit = limit
        self.spent = 0
        self.reservations = Leases()
        self.expires_at = expires_at

    @property
    def reserved(self) -> int:
        return self.reservations.total

    def fits(self, amount: int) -> bool:
        """Spent budget is a hard stop even for free requests; otherwise the worst case must fit."""
        return self.spent < self.limit and self.spent + self.reserved + amount <= self.limit

    def hopeless(self, amount: int) -> bool:
        """Waiting for other requests' reservations to settle cannot make ``amount`` fit."""
        return self.spent >= self.limit or self.spent + amount > self.limit
