"""Compose the ordered middleware list into one handler, once, at start-up."""

from __future__ import annotations

from collections.abc import Sequence

from sluice.schema.context import CallNext, Middleware, RequestContext, Result


def compose(middlewares: Sequence[Middleware], terminal: CallNext) -> CallNext:
    """``middlewares[0]`` is outermost. Each receives ``(ctx, call_next)``."""
    handler = terminal
    for mw in reversed(middlewares):
        handler = _bind(mw, handler)
    return handler


def _bind(mw: Middleware, nxt: CallNext) -> CallNext:
    async def call(ctx: RequestContext) -> Result:
        return await mw(ctx, nxt)

    return call
