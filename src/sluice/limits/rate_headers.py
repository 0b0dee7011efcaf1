"""The ``x-ratelimit-*`` response headers: the tightest per-minute limit of each unit, in OpenAI's
names and duration style."""

from __future__ import annotations

import math
from collections.abc import Sequence

from sluice.limits.model import WINDOW_S, RateCheck, RateStatus


def rate_headers(rates: Sequence[RateCheck], statuses: Sequence[RateStatus]) -> dict[str, str]:
    """x-ratelimit-* for the tightest per-minute limit of each unit (OpenAI's header names)."""
    headers: dict[str, str] = {}
    best_req: tuple[int, int, float] | None = None
    best_tok: tuple[int, int, float] | None = None
    for rc, st in zip(rates, statuses, strict=False):
        if rc.rpm is not None and st.requests_remaining is not None:
            cand = (st.requests_remaining, rc.rpm, st.requests_reset_s)
            if best_req is None or cand[0] < best_req[0]:
                best_req = cand
        if rc.tpm is not None and st.tokens_remaining is not None:
            cand = (st.tokens_remaining, rc.tpm, st.tokens_reset_s)
            if best_tok is None or cand[0] < best_tok[0]:
                best_tok = cand
    for unit, best in (("requests", best_req), ("tokens", best_tok)):
        if best is not None:
            remaining, limit, reset = best
            headers[f"x-ratelimit-limit-{unit}"] = str(limit)
            headers[f"x-ratelimit-remaining-{unit}"] = str(max(0, remaining))
            headers[f"x-ratelimit-reset-{unit}"] = format_reset(reset)
    return headers


def format_reset(seconds: float) -> str:
    """OpenAI's duration style: ``20ms``, ``1.5s``, ``6m0s``."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    if seconds < WINDOW_S:
        return f"{math.ceil(seconds * 10) / 10:g}s"
    minutes, rest = divmod(math.ceil(seconds), 60)
    return f"{minutes}m{rest}s"
