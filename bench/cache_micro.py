"""Micro-benchmark of the response cache, without sockets (like ``pipeline_micro.py``).

``.venv/bin/python bench/cache_micro.py [N]`` starts the real services (SQLite store, key, request
log) with the upstream call replaced by an in-memory answer, drives ``POST /v1/chat/completions``
through the real dispatcher and reports main-thread CPU µs per request for four cells:

* ``off``        — a route without ``cache:``, every request new;
* ``exact-miss`` — a cached route, every request new (lookup, key, write): the miss overhead;
* ``exact-hit``  — a cached route, the same request every time: served from the memory store;
* ``semantic``   — the semantic lookup alone (local embedder + search) at 10,000 entries in one
  scope's bucket: wall-clock p50 / p99, and the event loop's p99 lag while lookups run (what other
  routes' requests would feel). Needs the ``semantic`` extra.

Never part of the test run; figures on a shared machine are noisy: compare cells of one run.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import yaml  # noqa: E402
from sluice_bench import payloads  # noqa: E402

from sluice.app import dispatcher, running  # noqa: E402
from sluice.config.loader import parse_config  # noqa: E402
from sluice.schema.upstream import UpstreamResponse  # noqa: E402
from sluice.server.protocol import ServerState  # noqa: E402
from sluice.server.wire import Request, Response  # noqa: E402
from sluice.store.keys import new_key  # noqa: E402
from sluice.transport import client  # noqa: E402

CONFIG = """
store: {{url: "sqlite:///{db}"}}
providers:
  up: {{type: openai, base_url: "http://127.0.0.1:9/v1", api_key: "env:BENCH_MICRO_KEY"}}
models:
  {model}: {{targets: [{{provider: up, model: {model}}}]}}
  plain: {{targets: [{{provider: up, model: {model}}}]}}
routes:
  - {{name: cached, match: {{model: {model}}}, cache: {{ttl_s: 3600}}}}
  - {{name: uncached, match: {{model: plain}}}}
teams:
  bench: {{}}
"""
_BODY = payloads.chat_completion()


class _Conn:
    closed = False

    def write(self, data: bytes) -> None:
        pass

    async def drain(self) -> None:
        pass


async def _answer(self: Any, req: Any, deadline: Any) -> UpstreamResponse:
    return UpstreamResponse(200, {"content-type": "application/json"}, _BODY)


def _bodies(model: str, n: int, vary: bool) -> list[bytes]:
    base = json.loads(payloads.chat_request(model))
    out = []
    for i in range(n):
        if vary:
            base["messages"][-1]["content"] = f"{payloads._USER} (#{i})"
        out.append(json.dumps(base).encode())
    return out


async def _cell(state: ServerState, svc: Any, secret: str, bodies: list[bytes]) -> float:
    conn = _Conn()

    async def one(body: bytes) -> None:
        headers = {"host": "127.0.0.1", "content-type": "application/json", "authorization": f"Bearer {secret}",
                   "content-length": str(len(body))}  # fmt: skip
        req = Request(conn, svc, "POST", "/v1/chat/completions", headers, keep_alive=True, http11=True,
                      max_body=state.max_body)  # fmt: skip
        req.feed(body)
        req.finish()
        resp = await state.handler(req)
        assert isinstance(resp, Response) and resp.status == 200, resp
        resp.encode(True)

    t0 = time.thread_time()
    for body in bodies:
        await one(body)
    await asyncio.sleep(0)
    return (time.thread_time() - t0) / len(bodies) * 1e6


async def exact_cells(n: int) -> dict[str, float]:
    client.Transport.send = _answer  # type: ignore[method-assign]
    os.environ.setdefault("BENCH_MICRO_KEY", "sk-upstream")
    with tempfile.TemporaryDirectory() as tmp:
        config = parse_config(yaml.safe_load(CONFIG.format(db=f"{tmp}/bench.db", model=payloads.MODEL)))
        async with running(config) as svc:
            secret, record = new_key(svc.hmac_key, team="bench", user=None, name="bench", models=None)
            await svc.store.create_key(replace(record, rpm=10**9))
            await svc.keys.reload(force=True)
            state = ServerState(svc, dispatcher(), max_body=config.server.max_body_bytes)
            await _cell(state, svc, secret, _bodies("plain", 500, True))  # warm-up
            results: dict[str, list[float]] = {"off": [], "exact-miss": [], "exact-hit": []}
            for r in range(5):  # interleaved rounds, so drift hits every cell alike
                results["off"].append(await _cell(state, svc, secret, _bodies("plain", n, True)))
                miss = [b.replace(b"(#", f"(r{r}#".encode()) for b in _bodies(payloads.MODEL, n, True)]
                results["exact-miss"].append(await _cell(state, svc, secret, miss))
                results["exact-hit"].append(
                    await _cell(state, svc, secret, _bodies(payloads.MODEL, n, False))
                )
            return {k: statistics.median(v) for k, v in results.items()}


async def semantic_cell(entries: int = 10_000, lookups: int = 300) -> dict[str, float]:
    import numpy as np

    from sluice.cache.embedders import LocalEmbedder
    from sluice.cache.keys import KeyParts, Partition
    from sluice.cache.semantic import SemanticCache, probe
    from sluice.schema.chat import ChatRequest, Message

    sem = SemanticCache(LocalEmbedder(), max_vectors=entries * 2)
    await sem.embedder.load()  # type: ignore[attr-defined]
    parts = KeyParts("chat", "faq", "m", Partition("team", "bench", "bench"), 1, 0)
    rng = np.random.default_rng(1)
    first = probe(parts, ChatRequest(model="m", messages=[Message(role="user", content="seed question")]))
    assert first is not None
    for i in range(entries):  # one scope's bucket with 10,000 entries
        v = rng.standard_normal(384).astype(np.float32)
        sem.index.add(first.bucket, v / np.linalg.norm(v), f"faq/bench/{i}", time.time() + 3600)
    questions = [f"How do I reset the password of account number {i % 37}?" for i in range(lookups)]
    lag: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:  # what any other request on the loop would wait
        while not stop.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            lag.append((time.perf_counter() - t - 0.001) * 1000)

    async def lookups_run() -> list[float]:
        times = []
        for q in questions:
            p = probe(parts, ChatRequest(model="m", messages=[Message(role="user", content=q)]))
            assert p is not None
            t = time.perf_counter()
            vec = await sem.vector(q)
            assert vec is not None
            await asyncio.to_thread(sem.index.nearest, first.bucket, vec, 0.95, time.time())
            times.append((time.perf_counter() - t) * 1000)
        return times

    idle_task = asyncio.create_task(ticker())
    await asyncio.sleep(2.0)
    idle = sorted(lag)
    lag.clear()
    times = sorted(await lookups_run())
    stop.set()
    await idle_task
    busy = sorted(lag)
    await sem.close()

    def pct(xs: list[float], p: float) -> float:
        return xs[min(len(xs) - 1, int(len(xs) * p))]

    return {"lookup_p50_ms": pct(times, 0.5), "lookup_p99_ms": pct(times, 0.99),
            "loop_lag_p99_idle_ms": pct(idle, 0.99), "loop_lag_p99_busy_ms": pct(busy, 0.99)}  # fmt: skip


async def main(n: int) -> None:
    exact = await exact_cells(n)
    print(f"CPU µs per request (median of 5 interleaved rounds of {n}):")
    for name, us in exact.items():
        print(f"  {name:<11} {us:8.1f} µs")
    print(f"  miss overhead: {exact['exact-miss'] - exact['off']:+.1f} µs per request")
    print(f"  hit throughput vs uncached (CPU-bound, one core): {exact['off'] / exact['exact-hit']:.2f}x")
    try:
        sem = await semantic_cell()
    except ImportError as exc:
        print(f"semantic: skipped ({exc})")
        return
    print("semantic lookup at 10,000 entries in one scope (local embedder, wall clock):")
    for name, ms in sem.items():
        print(f"  {name:<22} {ms:7.2f} ms")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    asyncio.run(main(int(args[0]) if args else 3000))
