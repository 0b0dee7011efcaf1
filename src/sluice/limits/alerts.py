"""Budget threshold alerts: logged, and POSTed to a webhook in the background (through the\ngateway's transport, handed in as a ``post`` function: limits/ does no I/O of its own).

A threshold fires on the one settlement that moves a period's spend across it. Spend only grows
within a period and every settlement is atomic, so each threshold fires once per period even with
many replicas, without any extra "already sent" state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

import msgspec

log = logging.getLogger("sluice.alerts")


@dataclass(frozen=True, slots=True)
class BudgetAlert:
    scope: str
    """The budget's level, e.g. ``team billing``."""
    period: str
    period_start: datetime
    resets_at: datetime
    threshold: float
    limit_usd: Decimal
    spent_usd: Decimal

    def message(self) -> str:
        return (
            f"{self.scope} has spent ${self.spent_usd:.2f} of its {self.period} ${self.limit_usd:.2f} budget "
            f"({self.threshold:.0%} threshold); resets {self.resets_at.isoformat()}"
        )

    def to_json(self) -> bytes:
        return msgspec.json.encode(
            {
                "type": "budget_threshold",
                "scope": self.scope,
                "period": self.period,
                "period_start": self.period_start.isoformat(),
                "resets_at": self.resets_at.isoformat(),
                "threshold": self.threshold,
                "limit_usd": str(self.limit_usd),
                "spent_usd": str(self.spent_usd),
                "text": self.message(),
            }
        )


class AlertSink(Protocol):
    """Receives alerts on the request path: must return at once (queue, never await I/O)."""

    def notify(self, alert: BudgetAlert) -> None: ...


class LogAlerts:
    """Only the log line (no webhook configured)."""

    def notify(self, alert: BudgetAlert) -> None:
        log.warning("budget alert: %s", alert.message())


#: POSTs one JSON body; raises on failure (a refused status included).
Post = Callable[[bytes], Awaitable[object]]


class WebhookAlerts:
    """Log line plus a JSON POST from a background task; failures are logged, never raised."""

    def __init__(self, post: Post) -> None:
        self._post_body = post
        self._tasks: set[asyncio.Task[None]] = set()
        self.sent = 0
        self.failed = 0

    def notify(self, alert: BudgetAlert) -> None:
        log.warning("budget alert: %s", alert.message())
        task = asyncio.get_running_loop().create_task(self._post(alert))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, alert: BudgetAlert) -> None:
        try:
            await self._post_body(alert.to_json())
            self.sent += 1
        except Exception as exc:
            self.failed += 1
            # The URL may carry a token: name only the failure.
            log.error("budget alert webhook failed (%s) for %s", type(exc).__name__, alert.scope)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
