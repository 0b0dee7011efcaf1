"""Bench cell: the CPU that metrics and tracing add to one request, on next to off.

``.venv/bin/python bench/telemetry_micro.py [N]`` drives ``POST /v1/chat/completions`` through the
real dispatcher and pipeline (as ``pipeline_micro.py`` does: real services, in-memory upstream
answer) in three configurations, interleaved round by round so machine noise hits them alike:

* ``off``      — metrics' per-request call replaced by a no-op, no tracing;
* ``metrics``  — the default (Prometheus counters and histograms);
* ``tracing``  — metrics plus ``telemetry.otlp`` at ``sample_ratio: 1.0``, exporting to a local
  OTLP/HTTP sink in another process (so the SDK's export thread really encodes and sends).

It reports process CPU per request (every thread of the gateway process: the export thread's
protobuf encoding and HTTP calls included) and the main thread's alone. The bars (issue #14):
metrics ≤ 10 µs, tracing at 100% sampling ≤ 60 µs. Never part of the test run.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import yaml  # noqa: E402
from pipeline_micro import CONFIG, _answer, _Conn  # noqa: E402
from sluice_bench import payloads  # noqa: E402

from sluice.app import dispatcher, running  # noqa: E402
from sluice.config.loader import parse_config  # noqa: E402
from sluice.server.protocol import ServerState  # noqa: E402
from sluice.server.wire import Request, Response  # noqa: E402
from sluice.store.keys import new_key  # noqa: E402
from sluice.telemetry.metrics import METRICS  # noqa: E402
from sluice.transport import client  # noqa: E402

SINK = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _measure(extra: str, n: int, rounds: int, no_metrics: bool) -> list[tuple[float, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        text = CONFIG.format(db=f"{tmp}/bench.db", model=payloads.MODEL) + extra
        config = parse_config(yaml.safe_load(text))
        async with running(config) as svc:
            secret, record = new_key(svc.hmac_key, team="bench", user=None, name="bench", models=None)
            await svc.store.create_key(replace(record, rpm=10**9))
            await svc.keys.reload(force=True)
            state = ServerState(svc, dispatcher(), max_body=config.server.max_body_bytes)
            body = payloads.chat_request()
            headers = {"host": "127.0.0.1", "content-type": "application/json", "authorization": f"Bearer {secret}",
                       "content-length": str(len(body))}  # fmt: skip
            conn = _Conn()
            saved = METRICS.observe_request
            if no_metrics:
                METRICS.observe_request = lambda *a: None  # type: ignore[method-assign]

            async def one() -> None:
                req = Request(conn, svc, "POST", "/v1/chat/completions", dict(headers), keep_alive=True,
                              http11=True, max_body=state.max_body)  # fmt: skip
                req.feed(body)
                req.finish()
                resp = await state.handler(req)
                assert isinstance(resp, Response) and resp.status == 200, resp
                resp.encode(True)

            try:
                for _ in range(500):
                    await one()
                out = []
                for _ in range(rounds):
                    p0, t0 = time.process_time(), time.thread_time()
                    for _ in range(n):
                        await one()
                    await asyncio.sleep(1.2)  # let the export thread send this round's batches
                    p1, t1 = time.process_time(), time.thread_time()
                    out.append(((p1 - p0) / n * 1e6, (t1 - t0) / n * 1e6))
                return out
            finally:
                METRICS.observe_request = saved  # type: ignore[method-assign]


async def run(n: int) -> None:
    client.Transport.send = _answer  # type: ignore[method-assign]
    os.environ.setdefault("BENCH_MICRO_KEY", "sk-upstream")
    port = _free_port()
    sink = subprocess.Popen([sys.executable, "-c", SINK, str(port)])
    time.sleep(0.5)
    tracing = f"telemetry:\n  otlp: {{endpoint: 'http://127.0.0.1:{port}', sample_ratio: 1.0}}\n"
    unsampled = tracing.replace("sample_ratio: 1.0", "sample_ratio: 0.0")
    cells: dict[str, Any] = {"off": ("", True), "metrics": ("", False), "unsampled": (unsampled, False),
                             "tracing": (tracing, False)}  # fmt: skip
    results: dict[str, list[tuple[float, float]]] = {k: [] for k in cells}
    try:
        for _ in range(3):
            for name, (extra, no_metrics) in cells.items():
                results[name] += await _measure(extra, n, 2, no_metrics)
    finally:
        sink.terminate()
    med = {k: sorted(v)[len(v) // 2] for k, v in results.items()}
    mins = {k: min(v) for k, v in results.items()}
    for k in cells:
        print(f"{k:9s} process CPU/request: median {med[k][0]:6.1f} µs, min {mins[k][0]:6.1f} µs; "
              f"main thread median {med[k][1]:6.1f} µs")  # fmt: skip
    print(f"metrics add {med['metrics'][0] - med['off'][0]:+.1f} µs (min-to-min {mins['metrics'][0] - mins['off'][0]:+.1f}); "
          f"tracing adds {med['tracing'][0] - med['metrics'][0]:+.1f} µs on top (min-to-min "
          f"{mins['tracing'][0] - mins['metrics'][0]:+.1f})")  # fmt: skip


async def one_cell(cell: str, n: int) -> None:
    """``--cell NAME N``: that cell alone, one round, for ``valgrind --tool=callgrind`` (run it with
    two values of N and divide the difference in instructions by the difference in N)."""
    client.Transport.send = _answer  # type: ignore[method-assign]
    os.environ.setdefault("BENCH_MICRO_KEY", "sk-upstream")
    port = _free_port()
    sink = subprocess.Popen([sys.executable, "-c", SINK, str(port)])
    time.sleep(0.5)
    tracing = f"telemetry:\n  otlp: {{endpoint: 'http://127.0.0.1:{port}', sample_ratio: RATIO}}\n"
    extra = {"off": "", "metrics": "", "unsampled": tracing.replace("RATIO", "0.0"),
             "tracing": tracing.replace("RATIO", "1.0")}[cell]  # fmt: skip
    try:
        await _measure(extra, n, 1, cell == "off")
    finally:
        sink.terminate()


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if "--cell" in sys.argv:
        asyncio.run(one_cell(args[0], int(args[1])))
    else:
        asyncio.run(run(int(args[0]) if args else 5000))
