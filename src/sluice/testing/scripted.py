"""Scripted failure sequences for the fake upstreams: ``fake.script(model, [500, 429, "ok"])``.

Each request for ``model`` takes the next step; when the script is used up the model name decides
again (a plain name answers normally). Steps:

``"ok"`` / ``200``               a normal answer
``500`` ``502`` ``503`` ``529``  that status with an OpenAI-style error body
``429`` / ``"429:N"``            rate limited, ``retry-after: N`` (default 1)
``400`` ``401`` ``403`` ``404`` ``422``  client errors (never retried)
``"context"``                    400 context_length_exceeded
``"reset"``                      the connection is closed without a response
``"slow"``                       the response starts after ``slow_s``
``"slow-first-token"``           stream: headers at once, the first chunk after ``slow_s``
``"malformed"``                  unreadable JSON (plain) / a malformed SSE event (stream)
``"truncate"``                   stream: two chunks, then the body ends cleanly but unfinished
``"drop"``                       stream: two chunks, then the connection is cut
``"stall"``                      stream: two chunks, then silence for ``stall_s``
``"stream-error"``               stream: two chunks, then an error event
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable

Step = int | str

#: Step → the fake's fault name (the model-name convention the fakes share).
_FAULT_NAMES = {
    "500": "fault-500", "529": "fault-529", "400": "fault-400", "401": "fault-401", "context": "fault-context",
    "malformed": "fault-malformed", "drop": "fault-drop-stream", "stream-error": "fault-stream-error",
    "slow": "fault-slow",
}  # fmt: skip


class Scripts:
    """Per-model queues of steps; thread-safe (tests script a fake running in another thread)."""

    def __init__(self) -> None:
        self._steps: dict[str, deque[str]] = {}
        self._lock = threading.Lock()

    def set(self, model: str, steps: Iterable[Step]) -> None:
        with self._lock:
            self._steps[model] = deque(str(s) for s in steps)

    def clear(self) -> None:
        with self._lock:
            self._steps.clear()

    def next(self, model: str) -> str | None:
        with self._lock:
            queue = self._steps.get(model)
            return queue.popleft() if queue else None


def behaviour(step: str | None, model: str) -> str:
    """The fault name (or plain model name) that decides how to answer this request."""
    if step is None:
        return model
    if step in ("ok", "200"):
        return "ok"
    return _FAULT_NAMES.get(step, step)


def error_status(name: str) -> tuple[int, float | None] | None:
    """A scripted bare status (``"502"``, ``"429:3"``) → (status, retry-after)."""
    head, _, tail = name.partition(":")
    if not head.isdigit():
        return None
    status = int(head)
    if status == 429:
        return status, float(tail) if tail else 1.0
    return status, None
