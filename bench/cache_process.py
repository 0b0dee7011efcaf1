"""The response cache in the real gateway process: its CPU per request, cache off / miss / hit.

``.venv/bin/python bench/cache_process.py [N]`` starts the fast fixed upstream
(``sluice_bench.upstream``) and ``sluice serve`` (SQLite request log, in-memory state), then sends N
requests per cell over one keep-alive connection and reads the gateway's own CPU time (user +
system, from /proc) before and after each cell. CPU per request is what bounds a gateway's
throughput on its core, and unlike wall time it is not skewed by other work on a shared machine:

* ``off``        — a route without ``cache:``, every request new (upstream call each time);
* ``exact-miss`` — a cached route, every request new (lookup + upstream + write);
* ``exact-hit``  — a cached route, the same request every time (no upstream call).

Never part of the test run.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from sluice_bench import payloads  # noqa: E402

POLICY = """
store: {{url: "sqlite:///{db}"}}
providers:
  up: {{type: openai, base_url: "http://127.0.0.1:{up}/v1", api_key: env:BENCH_KEY}}
models:
  {model}: {{targets: [{{provider: up, model: {model}}}]}}
  plain: {{targets: [{{provider: up, model: {model}}}]}}
routes:
  - {{name: cached, match: {{model: {model}}}, cache: {{ttl_s: 3600}}}}
  - {{name: uncached, match: {{model: plain}}}}
teams:
  bench: {{}}
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def _bodies(model: str, n: int, vary: bool, tag: str) -> list[bytes]:
    base = json.loads(payloads.chat_request(model))
    out = []
    for i in range(n):
        if vary:
            base["messages"][-1]["content"] = f"{tag} {i}"
        out.append(json.dumps(base).encode())
    return out


def _cell(pid: int, port: int, key: str, bodies: list[bytes]) -> tuple[float, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    cpu0, t0 = _cpu_s(pid), time.perf_counter()
    for body in bodies:
        conn.request("POST", "/v1/chat/completions", body, headers)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200, resp.status
    wall = time.perf_counter() - t0
    cpu = _cpu_s(pid) - cpu0
    conn.close()
    return cpu / len(bodies) * 1e6, len(bodies) / wall


def main(n: int) -> None:
    env = {**os.environ, "BENCH_KEY": "sk-bench"}
    with tempfile.TemporaryDirectory() as tmp:
        up_port, gw_port = _port(), _port()
        policy = Path(tmp) / "sluice.yaml"
        policy.write_text(POLICY.format(db=f"{tmp}/b.db", up=up_port, model=payloads.MODEL))
        upstream = subprocess.Popen(
            [sys.executable, "-m", "sluice_bench.upstream", "--port", str(up_port)], cwd=BENCH
        )
        cli = [sys.executable, "-m", "sluice.cli"]
        out = subprocess.run([*cli, "keys", "create", "--config", str(policy), "--team", "bench", "--json"],
                             env=env, capture_output=True, text=True, check=True)  # fmt: skip
        key = json.loads(out.stdout)["key"]
        gateway = subprocess.Popen([*cli, "serve", "--config", str(policy), "--port", str(gw_port)], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            _wait(up_port)
            _wait(gw_port)
            _cell(gateway.pid, gw_port, key, _bodies("plain", 1000, True, "warm"))
            cells: dict[str, list[tuple[float, float]]] = {"off": [], "exact-miss": [], "exact-hit": []}
            for r in range(3):
                cells["off"].append(_cell(gateway.pid, gw_port, key, _bodies("plain", n, True, f"off{r}")))
                cells["exact-miss"].append(
                    _cell(gateway.pid, gw_port, key, _bodies(payloads.MODEL, n, True, f"m{r}"))
                )
                cells["exact-hit"].append(
                    _cell(gateway.pid, gw_port, key, _bodies(payloads.MODEL, n, False, ""))
                )
        finally:
            gateway.terminate()
            upstream.terminate()
            gateway.wait(20)
            upstream.wait(20)
    med = {k: sorted(v)[1] for k, v in cells.items()}
    print(f"gateway CPU per request (median of 3 interleaved rounds of {n}, sequential keep-alive client):")
    for name, (us, rps) in med.items():
        print(f"  {name:<11} {us:7.1f} µs CPU   ({rps:,.0f} req/s wall, noisy)")
    print(f"  exact-miss overhead: {med['exact-miss'][0] - med['off'][0]:+.1f} µs CPU per request")
    print(
        f"  exact-hit throughput vs uncached on a saturated core: {med['off'][0] / med['exact-hit'][0]:.2f}x"
    )


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(int(args[0]) if args else 5000)
