"""The stream tests: time to first token (interleaved rounds) and 1,000 concurrent slow streams."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Any

from sluice_bench import streaming
from sluice_bench.isolation import alone
from sluice_bench.targets import Target, Upstreams

if TYPE_CHECKING:
    from sluice_bench.runner import Plan

#: Targets that only take the load cells (no stream tests).
CHAT_ONLY = ("nginx-proxy",)


def _ttft_interleaved(targets: list[Target], plan: Plan, ups: Upstreams) -> dict[str, dict[str, Any]]:
    """TTFT samples taken in rounds across the targets (like the load), so drift hits all alike."""
    samples: dict[str, list[streaming.StreamOutcome]] = {
        t.name: [] for t in targets if t.name not in CHAT_ONLY
    }
    failed: dict[str, str] = {}
    per_round = max(plan.ttft_concurrency, -(-plan.ttft_streams // plan.rounds))
    for _ in range(plan.rounds):
        for target in targets:
            if target.name in failed or target.name in CHAT_ONLY:
                continue
            try:
                with alone(target, targets):
                    samples[target.name] += _ttft_round(target, plan, ups, per_round)
            except Exception as exc:
                failed[target.name] = f"{type(exc).__name__}: {exc}"[:1000]
    return {
        name: {"error": failed[name]} if name in failed else streaming.summarise(outs, ups.chunks("paced"))
        for name, outs in samples.items()
    }


def _ttft_round(target: Target, plan: Plan, ups: Upstreams, streams: int) -> list[streaming.StreamOutcome]:
    return asyncio.run(
        streaming.ttft_samples(
            target.url("paced"),
            target.key,
            target.model("paced"),
            n_chunks=ups.chunks("paced"),
            concurrency=plan.ttft_concurrency,
            streams=streams,
        )
    )


def _concurrent(target: Target, plan: Plan, ups: Upstreams) -> dict[str, object]:
    return asyncio.run(
        streaming.concurrent_test(
            target.url("slow"),
            target.key,
            target.model("slow"),
            n_chunks=ups.chunks("slow"),
            streams=plan.streams,
            gateway_pids=target.pids if target.is_gateway else None,
            ramp_s=plan.stream_ramp_s,
            timeout=120.0 + plan.streams / 10,
        )
    )


def stream_tests(targets: list[Target], plan: Plan, ups: Upstreams) -> dict[str, Any]:
    results: dict[str, Any] = {t.name: {} for t in targets if t.name not in CHAT_ONLY}
    for name, ttft in _ttft_interleaved(targets, plan, ups).items():
        if "error" in ttft:
            results[name]["error"] = ttft["error"]
        else:
            results[name]["ttft"] = ttft
    for target in targets:
        if target.name in CHAT_ONLY:
            continue
        res = results[target.name]
        if plan.streams and "error" not in res:
            try:
                with alone(target, targets):
                    res["concurrent"] = _concurrent(target, plan, ups)
            except Exception as exc:
                res["error"] = f"{type(exc).__name__}: {exc}"[:1000]
        tt = res.get("ttft", {})
        cc = res.get("concurrent", {})
        print(
            f"[bench] streams {target.name}: TTFT p50 {tt.get('ttft_ms', {}).get('p50')} ms; "
            f"{cc.get('complete')}/{cc.get('streams')} concurrent complete, "
            f"{cc.get('rss_per_stream_kb')} KB/stream {res.get('error', '')}",
            file=sys.stderr,
            flush=True,
        )
    return results
