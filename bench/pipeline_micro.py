"""Micro-benchmark of the gateway's own per-request work, without sockets.

``.venv/bin/python bench/pipeline_micro.py [N] [--profile]`` starts the real services (SQLite
store, key, per-key rpm limit, request log) with the upstream call replaced by an in-memory
answer, then drives ``POST /v1/chat/completions`` through the real dispatcher N times and reports
the main thread's CPU microseconds per request. ``--profile`` prints cProfile's top entries.
``--responses`` drives the same conversation through ``POST /v1/responses`` instead (``store``
true, so each answer is also kept for ``previous_response_id``); ``--no-store`` with it sends
``store: false``.
What it leaves out (socket reads and writes, the event loop's I/O) is what ``lean`` measures in
the full benchmark's notes. Never part of the test run.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import os
import pstats
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
teams:
  bench: {{}}
"""


class _Conn:
    closed = False

    def write(self, data: bytes) -> None:
        pass

    async def drain(self) -> None:
        pass


_BODY = payloads.chat_completion()


async def _answer(self: Any, req: Any, deadline: Any) -> UpstreamResponse:
    return UpstreamResponse(200, {"content-type": "application/json"}, _BODY)


def _responses_body() -> bytes:
    """The chat payload as a Responses request: system → instructions, turns → input items."""
    chat = json.loads(payloads.chat_request())
    system, *turns = chat["messages"]
    body = {
        "model": chat["model"], "instructions": system["content"], "input": turns,
        "temperature": chat["temperature"], "max_output_tokens": chat["max_tokens"], "user": chat["user"],
        "store": "--no-store" not in sys.argv,
    }  # fmt: skip
    return json.dumps(body).encode()


async def run(n: int, profile: bool) -> None:
    client.Transport.send = _answer  # type: ignore[method-assign]
    os.environ.setdefault("BENCH_MICRO_KEY", "sk-upstream")
    with tempfile.TemporaryDirectory() as tmp:
        config = parse_config(yaml.safe_load(CONFIG.format(db=f"{tmp}/bench.db", model=payloads.MODEL)))
        async with running(config) as svc:
            secret, record = new_key(svc.hmac_key, team="bench", user=None, name="bench", models=None)
            await svc.store.create_key(replace(record, rpm=None if os.environ.get("NO_RPM") else 10**9))
            await svc.keys.reload(force=True)
            state = ServerState(svc, dispatcher(), max_body=config.server.max_body_bytes)
            path = "/v1/responses" if "--responses" in sys.argv else "/v1/chat/completions"
            body = payloads.chat_request() if path.endswith("completions") else _responses_body()
            headers = {
                "host": "127.0.0.1", "content-type": "application/json", "accept": "application/json",
                "user-agent": "OpenAI/Python 1.54.0", "authorization": f"Bearer {secret}",
                "content-length": str(len(body)),
            }  # fmt: skip
            conn = _Conn()

            async def one() -> None:
                req = Request(
                    conn, svc, "POST", path, dict(headers), keep_alive=True, http11=True,
                    max_body=state.max_body,
                )  # fmt: skip
                req.feed(body)
                req.finish()
                resp = await state.handler(req)
                assert isinstance(resp, Response) and resp.status == 200, resp
                resp.encode(True)

            for _ in range(500):
                await one()
            import gc

            gc_time = [0.0, 0.0, 0.0]
            gc_n = [0, 0, 0]
            started = [0.0]

            def on_gc(phase: str, info: dict[str, int]) -> None:
                if phase == "start":
                    started[0] = time.perf_counter()
                else:
                    gc_time[info["generation"]] += time.perf_counter() - started[0]
                    gc_n[info["generation"]] += 1

            gc.callbacks.append(on_gc)
            prof = cProfile.Profile() if profile else None
            if prof:
                prof.enable()
            rounds = []
            for _ in range(1 if profile else 5):
                t0 = time.thread_time()
                for _ in range(n):
                    await one()
                rounds.append((time.thread_time() - t0) / n * 1e6)
            if prof:
                prof.disable()
            rounds.sort()
            total = n * len(rounds)
            print(
                "GC per request: "
                + ", ".join(f"gen{g} {gc_time[g] / total * 1e6:.2f} µs ({gc_n[g]} runs)" for g in range(3))
            )
            print(
                f"main-thread CPU per request: min {rounds[0]:.1f} µs, median {rounds[len(rounds) // 2]:.1f} µs "
                f"({len(rounds)} rounds of {n})"
            )
            if prof:
                pstats.Stats(prof).sort_stats(os.environ.get("SORT", "tottime")).print_stats(
                    int(os.environ.get("TOP", "45"))
                )


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    asyncio.run(run(int(args[0]) if args else 20000, "--profile" in sys.argv))
