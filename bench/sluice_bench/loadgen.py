"""Load generators: wrk (the real one) and a pure-Python fallback with the same output.

Both print one line ``BENCH_JSON {...}`` (see ``bench/wrk/chat.lua``); :func:`run` turns it into a
:class:`LoadResult`. The fallback (``python -m sluice_bench.loadgen``) exists so the smoke mode runs on
machines without wrk; it tops out at a few thousand requests a second, so it is never used for the
figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from sluice_bench.procs import Pinning

BENCH_DIR = Path(__file__).resolve().parent.parent
WRK_SCRIPT = BENCH_DIR / "wrk" / "chat.lua"


@dataclass(frozen=True)
class LoadSpec:
    url: str
    body_file: Path
    key: str
    concurrency: int
    duration_s: float
    timeout_s: float = 10.0


@dataclass(frozen=True)
class LoadResult:
    tool: str
    concurrency: int
    requests: int
    duration_s: float
    rps: float
    errors: dict[str, int]
    error_total: int
    latency_ms: dict[str, float]
    loadgen_cpu_s: float

    @property
    def loadgen_util(self) -> float:
        return self.loadgen_cpu_s / self.duration_s if self.duration_s > 0 else 0.0

    def to_json(self) -> dict[str, object]:
        out = asdict(self)
        out["loadgen_util"] = round(self.loadgen_util, 3)
        return out


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _parse(tool: str, spec: LoadSpec, stdout: str, cpu: float) -> LoadResult:
    line = next((ln for ln in reversed(stdout.splitlines()) if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"{tool} printed no BENCH_JSON line:\n{stdout[-2000:]}")
    data = json.loads(line[len("BENCH_JSON ") :])
    duration = data["duration_us"] / 1e6
    lat = data["latency_us"]
    errors = {k: int(v) for k, v in data["errors"].items()}
    pct = lat["percentiles"]
    return LoadResult(
        tool=tool,
        concurrency=spec.concurrency,
        requests=int(data["requests"]),
        duration_s=round(duration, 3),
        rps=round(data["requests"] / duration, 1) if duration > 0 else 0.0,
        errors=errors,
        error_total=sum(errors.values()),
        latency_ms={
            "p50": pct["50"] / 1000,
            "p90": pct["90"] / 1000,
            "p99": pct["99"] / 1000,
            "p99.9": pct["99.9"] / 1000,
            "mean": round(lat["mean"] / 1000, 4),
            "max": lat["max"] / 1000,
        },
        loadgen_cpu_s=round(cpu, 3),
    )


def run(spec: LoadSpec, *, tool: str, pinning: Pinning) -> LoadResult:
    """Run one load test to completion (blocking) and return its figures."""
    if tool == "wrk":
        argv = [
            "wrk",
            "-t1",
            f"-c{spec.concurrency}",
            f"-d{max(1, round(spec.duration_s))}s",
            f"--timeout={int(spec.timeout_s)}s",
            "-s",
            str(WRK_SCRIPT),
            spec.url,
            "--",
            str(spec.body_file),
            spec.key,
        ]
    else:
        argv = [
            sys.executable,
            "-m",
            "sluice_bench.loadgen",
            "--url",
            spec.url,
            "--body-file",
            str(spec.body_file),
            "--key",
            spec.key,
            "-c",
            str(spec.concurrency),
            "-d",
            str(spec.duration_s),
            "--timeout",
            str(spec.timeout_s),
        ]
    cpu0 = _children_cpu()
    proc = subprocess.run(
        [*pinning.prefix(pinning.load), *argv],
        capture_output=True,
        text=True,
        cwd=BENCH_DIR,
        timeout=spec.duration_s + spec.timeout_s + 30,
        check=False,
    )
    cpu = _children_cpu() - cpu0
    if proc.returncode != 0:
        raise RuntimeError(f"{tool} exited {proc.returncode}: {proc.stderr[-2000:]}{proc.stdout[-2000:]}")
    return _parse(tool, spec, proc.stdout, cpu)


# ----------------------------------------------------------------------------- pure-Python fallback


def _percentile(sorted_vals: list[float], q: float) -> float:
    if not sorted_vals:
        return 0.0
    idx = min(len(sorted_vals) - 1, max(0, round(q / 100 * len(sorted_vals) + 0.5) - 1))
    return sorted_vals[idx]


async def _py_load(url: str, body: bytes, key: str, concurrency: int, duration: float, timeout: float) -> str:
    import aiohttp

    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
    latencies: list[float] = []
    nbytes = 0
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    start = time.perf_counter()
    deadline = start + duration

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal nbytes
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    data = await resp.read()
                    nbytes += len(data)
                    if resp.status >= 400:
                        errors["status"] += 1
            except TimeoutError:
                errors["timeout"] += 1
                continue
            except aiohttp.ClientConnectorError:
                errors["connect"] += 1
                await asyncio.sleep(0.01)
                continue
            except aiohttp.ClientError:
                errors["read"] += 1
                continue
            latencies.append(time.perf_counter() - t0)

    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    lat = sorted(latencies)
    us = [v * 1e6 for v in lat]
    mean = sum(us) / len(us) if us else 0.0
    stdev = (sum((v - mean) ** 2 for v in us) / len(us)) ** 0.5 if us else 0.0
    result = {
        "requests": len(lat),
        "duration_us": int(elapsed * 1e6),
        "bytes": nbytes,
        "errors": errors,
        "latency_us": {
            "min": int(us[0]) if us else 0,
            "mean": mean,
            "max": int(us[-1]) if us else 0,
            "stdev": stdev,
            "percentiles": {str(q): int(_percentile(us, q)) for q in (50, 90, 99, 99.9)},
        },
    }
    return "BENCH_JSON " + json.dumps(result)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="pure-Python load generator (wrk fallback)")
    parser.add_argument("--url", required=True)
    parser.add_argument("--body-file", required=True, type=Path)
    parser.add_argument("--key", default="")
    parser.add_argument("-c", type=int, default=1)
    parser.add_argument("-d", type=float, default=2.0)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    body = args.body_file.read_bytes()
    print(asyncio.run(_py_load(args.url, body, args.key, args.c, args.d, args.timeout)), flush=True)


if __name__ == "__main__":
    main()
