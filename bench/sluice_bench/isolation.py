"""Measuring one target at a time: the others frozen, Sluice's request log written first."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.request
from collections.abc import Iterator

from sluice_bench.targets import Target


def wait_log_written(target: Target, timeout: float = 120.0) -> tuple[int | None, float]:
    """Wait until Sluice's request log holds no unwritten record; return the backlog found first and
    the seconds it took to write it (0 for other targets).

    Called after every Sluice cell, so a cell's throughput can be charged with writing its own log
    (``rps_sustained``) and the next cell does not measure a log catching up on the gateway's core."""
    if not target.name.startswith("sluice"):
        return None, 0.0
    start = time.monotonic()
    deadline = start + timeout
    first: int | None = None
    zeros = 0  # several workers answer /readyz in turn: want every one of them at 0
    drained_at = start
    while zeros < 4 and time.monotonic() < deadline:
        pending = log_pending(target)
        if first is None:
            first = pending
        if pending == 0:
            if zeros == 0:
                drained_at = time.monotonic()
            zeros += 1
        else:
            zeros = 0
        time.sleep(0.02 if zeros else 0.05)
    return first, (drained_at - start) if first else 0.0


def log_pending(target: Target) -> int | None:
    """Request records Sluice still holds in memory, unwritten, right after the cell."""
    try:
        with urllib.request.urlopen(f"{target.base}/readyz", timeout=5) as resp:
            return int(json.loads(resp.read()).get("pending_records", 0))
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def alone(target: Target, targets: list[Target]) -> Iterator[None]:
    """Freeze every other gateway while ``target`` is measured: they share its core, and an idle
    gateway is not always idle (LiteLLM's background loops took up to a quarter of the gateway
    core while Sluice was measured, doubling Sluice's latency at c=1)."""
    others = [t for t in targets if t is not target and t.is_gateway]
    for other in others:
        other.pause(True)
    try:
        wait_log_written(target)
        yield
    finally:
        for other in others:
            other.pause(False)
