"""Rate limits (requests/min, tokens/min, concurrency) and USD budgets at every level.

Pure algorithms live in :mod:`window` and :mod:`periods`; :mod:`memory` and :mod:`redis_state`
hold the counters; :mod:`resilient` applies the outage policy; :class:`Limiter` is the facade.
"""

from sluice.limits.alerts import AlertSink, BudgetAlert, LogAlerts, WebhookAlerts
from sluice.limits.backend import open_state
from sluice.limits.limiter import BudgetStatus, Limiter
from sluice.limits.memory import MemoryState
from sluice.limits.model import Level, Ticket
from sluice.limits.state import LimitState

__all__ = [
    "AlertSink",
    "BudgetAlert",
    "BudgetStatus",
    "Level",
    "LimitState",
    "Limiter",
    "LogAlerts",
    "MemoryState",
    "Ticket",
    "WebhookAlerts",
    "open_state",
]
