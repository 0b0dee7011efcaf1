"""What a refusal says: the numbers behind it, so the caller can tell a spent budget from a
request too large for what is left."""

from __future__ import annotations

from decimal import Decimal

from sluice.config.limits import BudgetConfig
from sluice.limits.model import BudgetUsage, from_nano


def hard_budget_message(
    what: str, budget: BudgetConfig, cost_nano: int, usage: BudgetUsage | None, resets: str
) -> str:
    """Exhausted only when it is; otherwise the worst case does not fit, with the numbers."""
    worst = from_nano(cost_nano)
    limit = budget.usd
    if usage is None:
        return (
            f"Budget refused: {what}. This request's worst-case cost ${worst:.6f} (its prompt plus "
            f"max_tokens at the model's price) does not fit in what is left; it resets at {resets}."
        )
    spent, reserved = from_nano(usage.spent_nano), from_nano(usage.reserved_nano)
    if spent >= limit:
        return f"Budget exhausted: {what}: ${spent:.6f} spent; it resets at {resets}."
    left = max(Decimal(0), limit - spent - reserved)
    share = spent / limit * 100 if limit else Decimal(0)
    return (
        f"Request too large for the budget: {what}: ${spent:.6f} spent ({share:.1f}%), "
        f"${reserved:.6f} reserved by requests in flight, ${left:.6f} left; this request's worst-case "
        f"cost is ${worst:.6f} (its prompt plus max_tokens at the model's price): lower max_tokens. "
        f"The budget resets at {resets}."
    )
