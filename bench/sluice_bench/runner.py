"""The one command: set up, run the interleaved rounds and the stream tests, write JSON + markdown.

.venv/bin/python bench/run.py            # full comparison (~15 min)
.venv/bin/python bench/run.py --smoke    # a few seconds, Python upstream + load generator
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sluice_bench import loadgen, nginx, payloads, report
from sluice_bench.isolation import alone, wait_log_written
from sluice_bench.procs import (
    Managed,
    Pinning,
    TreeSampler,
    core_busy_ticks,
    core_utilisation,
    cpu_seconds,
    free_port,
    rss_bytes,
    start,
    wait_port,
)
from sluice_bench.streamtests import stream_tests
from sluice_bench.targets import (
    LITELLM_VERSION,
    StreamShape,
    Target,
    Upstreams,
    direct,
    ensure_litellm_venv,
    litellm_version,
    nginx_proxy,
    sluice_available,
    start_litellm,
    start_sluice,
)

BENCH_DIR = Path(__file__).resolve().parent.parent
ALL_TARGETS = ("sluice", "sluice-w2", "litellm", "nginx-proxy", "direct")
SATURATED = 0.9
NOISY = 0.25


@dataclass(frozen=True)
class Plan:
    smoke: bool
    targets: tuple[str, ...]
    rounds: int
    duration_s: float
    warmup_s: float
    concurrency: tuple[int, ...]
    loadgen: str  # "wrk" | "python"
    upstream: str  # "nginx" | "python"
    paced: StreamShape
    slow: StreamShape
    ttft_streams: int
    ttft_concurrency: int
    streams: int
    stream_ramp_s: float


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Sluice vs LiteLLM vs direct, on this machine.")
    p.add_argument("--smoke", action="store_true", help="a few seconds, no LiteLLM, no thresholds")
    p.add_argument("--out", type=Path, default=BENCH_DIR / "results", help="where results go")
    p.add_argument("--targets", help=f"comma list from {','.join(ALL_TARGETS)}")
    p.add_argument("--rounds", type=int)
    p.add_argument("--duration", type=float, help="seconds per load cell")
    p.add_argument("--concurrency", help="comma list, e.g. 1,10,50,200")
    p.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    p.add_argument("--upstream", choices=["auto", "nginx", "python"], default="auto")
    p.add_argument("--streams", type=int, help="concurrent slow streams (default 1000; smoke 50)")
    p.add_argument("--no-streams", action="store_true", help="skip the streaming tests")
    p.add_argument("--no-install", action="store_true", help="never apt-get / pip install")
    p.add_argument("--keep-workdir", action="store_true", help="keep configs, logs and databases")
    return p.parse_args(argv)


def _apt_install(notes: list[str]) -> None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        notes.append("nginx/wrk missing and apt-get unavailable (not root?): using the Python fallbacks")
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for pkgs in (["nginx-light", "wrk"], ["nginx", "wrk"]):
        cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *pkgs]
        if subprocess.run(cmd, env=env, capture_output=True, check=False).returncode == 0:
            notes.append(f"installed {' '.join(pkgs)} with apt-get")
            return
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
        if subprocess.run(cmd, env=env, capture_output=True, check=False).returncode == 0:
            notes.append(f"installed {' '.join(pkgs)} with apt-get")
            return
    notes.append("apt-get could not install nginx/wrk: using the Python fallbacks")


def make_plan(args: argparse.Namespace, notes: list[str]) -> Plan:
    smoke = bool(args.smoke)
    if not smoke and not args.no_install and (not nginx.available() or not loadgen.wrk_available()):
        _apt_install(notes)
    tool = args.loadgen
    if tool == "auto":
        tool = "wrk" if not smoke and loadgen.wrk_available() else "python"
    up = args.upstream
    if up == "auto":
        up = "nginx" if not smoke and nginx.available() else "python"
    if not smoke and (tool != "wrk" or up != "nginx"):
        notes.append(
            f"full run WITHOUT wrk+nginx (load generator {tool}, upstream {up}): figures are not "
            "comparable with the bar"
        )
    if args.targets:
        targets = tuple(t.strip() for t in args.targets.split(",") if t.strip())
        unknown = set(targets) - set(ALL_TARGETS)
        if unknown:
            raise SystemExit(f"unknown targets: {', '.join(sorted(unknown))}")
    else:
        targets = ("sluice", "direct") if smoke else ALL_TARGETS
    conc: tuple[int, ...] = (1, 10) if smoke else (1, 10, 50, 200)
    if args.concurrency:
        conc = tuple(int(c) for c in args.concurrency.split(","))
    return Plan(
        smoke=smoke,
        targets=targets,
        rounds=args.rounds or (1 if smoke else 3),
        duration_s=args.duration or (1.0 if smoke else 10.0),
        warmup_s=0.5 if smoke else 3.0,
        concurrency=conc,
        loadgen=tool,
        upstream=up,
        paced=StreamShape(20, 20),
        slow=StreamShape(100, 5) if smoke else StreamShape(500, 20),
        ttft_streams=6 if smoke else 150,
        ttft_concurrency=2 if smoke else 10,
        streams=0 if args.no_streams else (args.streams or (50 if smoke else 1000)),
        stream_ramp_s=0.2 if smoke else 2.0,
    )


# ------------------------------------------------------------------------------------------- setup


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_gb = 0.0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 2**20, 1)
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "mem_gb": mem_gb,
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def _cmd_version(argv: list[str]) -> str | None:
    if shutil.which(argv[0]) is None and not Path(argv[0]).exists():
        return None
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    text = (proc.stdout + proc.stderr).strip().splitlines()
    return text[0].strip() if text else None


def versions(plan: Plan) -> dict[str, str | None]:
    def dist(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    out: dict[str, str | None] = {"sluice": dist("sluice-gateway"), "aiohttp": dist("aiohttp")}
    if "litellm" in plan.targets:
        out["litellm"] = litellm_version()
    if plan.upstream == "nginx":
        binary = nginx.nginx_binary()
        ngx = _cmd_version([binary, "-v"]) if binary else None
        out["nginx"] = ngx.rsplit("/", 1)[-1] if ngx else None
    if plan.loadgen == "wrk":
        wrk = _cmd_version(["wrk", "--version"])
        out["wrk"] = wrk.split()[1] if wrk and len(wrk.split()) > 1 else wrk
    return out


def start_upstreams(workdir: Path, plan: Plan, pinning: Pinning) -> tuple[Upstreams, list[Managed]]:
    procs: list[Managed] = []
    env = dict(os.environ, PYTHONPATH=str(BENCH_DIR))
    paced_port = free_port()
    paced = start(
        "paced-upstream",
        [sys.executable, "-m", "sluice_bench.upstream", "--port", str(paced_port)],
        log_dir=workdir,
        env=env,
        cwd=BENCH_DIR,
        cores=pinning.load,
        pinning=pinning,
    )
    procs.append(paced)
    wait_port(paced_port, 15, paced.proc)
    if plan.upstream == "nginx":
        fixed_port = free_port()
        procs.append(nginx.start_nginx(workdir, fixed_port, pinning, pinning.load))
        fixed = f"http://127.0.0.1:{fixed_port}"
    else:
        fixed = f"http://127.0.0.1:{paced_port}"  # the Python upstream serves the fixed routes too
    ups = Upstreams(
        fixed=fixed,
        paced=f"http://127.0.0.1:{paced_port}",
        paced_shape=plan.paced,
        slow_shape=plan.slow,
        fixed_server=plan.upstream,
    )
    return ups, procs


def start_targets(
    workdir: Path,
    plan: Plan,
    ups: Upstreams,
    pinning: Pinning,
    info: dict[str, dict[str, Any]],
    notes: list[str],
) -> list[Target]:
    targets: list[Target] = []
    sluice_ok, why = sluice_available()
    for name in plan.targets:
        entry: dict[str, Any] = {"gateway": name != "direct"}
        info[name] = entry
        t0 = time.monotonic()
        try:
            if name == "direct":
                target = direct(ups)
            elif name == "nginx-proxy":
                if plan.upstream != "nginx":
                    raise RuntimeError("needs the nginx upstream")
                target = nginx_proxy(workdir, ups, pinning)
            elif name.startswith("sluice"):
                if not sluice_ok:
                    raise RuntimeError(f"the gateway is not runnable yet: {why}")
                target = start_sluice(workdir, ups, pinning, workers=1 if name == "sluice" else 2)
            else:
                if not plan.smoke:
                    ensure_litellm_venv(notes)
                target = start_litellm(workdir, ups, pinning)
        except Exception as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}"[:2000]
            print(f"[bench] {name}: NOT RUN: {entry['error']}", file=sys.stderr, flush=True)
            continue
        entry.update(
            description=target.description,
            notes=target.notes,
            settings=target.settings,
            startup_s=round(time.monotonic() - t0, 2),
        )
        targets.append(target)
    # Idle memory: after the readiness request, once things settle.
    time.sleep(0.3 if plan.smoke else 2.0)
    for target in targets:
        if target.is_gateway:
            info[target.name]["rss_idle_mb"] = round(rss_bytes(target.pids()) / 2**20, 1)
    return targets


# -------------------------------------------------------------------------------------------- runs


def measure(
    target: Target, plan: Plan, pinning: Pinning, body: Path, c: int, duration: float
) -> dict[str, Any]:
    spec = loadgen.LoadSpec(
        url=target.url("chat"), body_file=body, key=target.key, concurrency=c, duration_s=duration
    )
    pids = target.pids()
    cpu0 = cpu_seconds(pids)
    ticks0 = core_busy_ticks()
    sampler = TreeSampler(target.pids) if target.is_gateway else None
    if sampler is not None:
        sampler.__enter__()
    try:
        res = loadgen.run(spec, tool=plan.loadgen, pinning=pinning)
    finally:
        if sampler is not None:
            sampler.__exit__(None, None, None)
    cpu = cpu_seconds(target.pids()) - cpu0
    run: dict[str, Any] = res.to_json()
    run["core_util"] = {str(k): v for k, v in core_utilisation(ticks0, core_busy_ticks()).items()}
    # Sluice's request log may still be writing the cell's records (its thread yields to the loop
    # on the gateway's one core): wait for it, and charge the cell with that time and CPU.
    pending, drain_s = wait_log_written(target)
    cpu_with_log = cpu_seconds(target.pids()) - cpu0 if drain_s else cpu
    run["loadgen_saturated"] = res.loadgen_util >= SATURATED
    load_util = [run["core_util"].get(str(c), 0.0) for c in pinning.load] if pinning.enabled else []
    # The load side's cores were all busy (wrk + upstreams + client): the figure is the load side's.
    run["load_core_saturated"] = bool(load_util) and min(load_util) >= 0.95
    if target.is_gateway:
        run["gateway_cpu_s"] = round(cpu, 3)
        run["gateway_cores_busy"] = round(cpu / res.duration_s, 3) if res.duration_s else None
        run["cpu_us_per_req"] = round(cpu_with_log * 1e6 / res.requests, 1) if res.requests else None
        run["rss_peak_mb"] = round(sampler.peak / 2**20, 1) if sampler is not None else None
        # Work on the gateway's core that is not the gateway's (other processes on the machine):
        # a figure taken while it is high is noisy.
        gw_cores = target.settings.get("cores")
        if isinstance(gw_cores, list) and len(gw_cores) == 1:
            busy = run["core_util"].get(str(gw_cores[0]), 0.0)
            run["gateway_core_foreign"] = round(max(0.0, busy - cpu / res.duration_s), 3)
            run["noisy"] = run["gateway_core_foreign"] > NOISY
        if target.name.startswith("sluice"):
            run["log_pending"] = pending
            run["log_drain_s"] = round(drain_s, 3)
            run["rps_sustained"] = (
                round(res.requests / (res.duration_s + drain_s), 1) if res.duration_s else None
            )
    return run


def load_rounds(targets: list[Target], plan: Plan, pinning: Pinning, body: Path) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    for target in targets:  # warm-up: connection pools, lazy imports, JITs of the world
        with contextlib.suppress(Exception), alone(target, targets):
            measure(target, plan, pinning, body, 10, plan.warmup_s)
    for rnd in range(1, plan.rounds + 1):
        for c in plan.concurrency:
            for target in targets:
                label = f"round {rnd} c={c} {target.name}"
                try:
                    with alone(target, targets):
                        run = measure(target, plan, pinning, body, c, plan.duration_s)
                except Exception as exc:
                    run = {"error": f"{type(exc).__name__}: {exc}"[:1000], "requests": 0, "error_total": 0}
                run.update(round=rnd, target=target.name, concurrency=c)
                runs.append(run)
                if "error" in run:
                    print(f"[bench] {label}: FAILED {run['error']}", file=sys.stderr, flush=True)
                else:
                    print(
                        f"[bench] {label}: {run['rps']:,.0f} req/s p50 {run['latency_ms']['p50']:.3f} ms "
                        f"p99 {run['latency_ms']['p99']:.3f} ms errors {run['error_total']}"
                        + (
                            f" ({run['rps_sustained']:,.0f} with its log written)"
                            if run.get("rps_sustained")
                            else ""
                        )
                        + (" (load generator saturated)" if run["loadgen_saturated"] else ""),
                        file=sys.stderr,
                        flush=True,
                    )
    return runs


# -------------------------------------------------------------------------------------------- main


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def write_results(results: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    prefix = f"{'smoke' if results['meta']['mode'] == 'smoke' else 'full'}-{stamp}"
    jpath = out_dir / f"{prefix}.json"
    mpath = out_dir / f"{prefix}.md"
    jpath.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    mpath.write_text(report.markdown(results))
    shutil.copyfile(jpath, out_dir / "latest.json")
    shutil.copyfile(mpath, out_dir / "latest.md")
    return jpath, mpath


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    notes: list[str] = []
    plan = make_plan(args, notes)
    pinning = Pinning.detect()
    if pinning.enabled:
        os.sched_setaffinity(0, set(pinning.load))  # this process (stream client) is load side
    else:
        notes.append("fewer than 2 cores or no taskset: nothing pinned")
    _raise_nofile()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="sluice-bench-"))
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    meta: dict[str, Any] = {
        "mode": "smoke" if plan.smoke else "full",
        "started": started,
        "machine": machine_info(),
        "versions": versions(plan),
        "pinning": pinning.describe(),
        "loadgen": plan.loadgen,
        "upstream": plan.upstream,
        "rounds": plan.rounds,
        "duration_s": plan.duration_s,
        "concurrency": list(plan.concurrency),
        "paced_stream": f"{plan.paced.chunks} chunks {plan.paced.interval_ms} ms apart, "
        f"{plan.ttft_streams} streams per target {plan.ttft_concurrency} at a time, "
        f"interleaved over {plan.rounds} round(s)",
        "slow_stream": f"{plan.streams} streams of {plan.slow.chunks} chunks {plan.slow.interval_ms} ms apart",
        "litellm_pinned_version": LITELLM_VERSION,
        "request_body_bytes": len(payloads.chat_request()),
        "notes": notes,
    }
    info: dict[str, dict[str, Any]] = {}
    procs: list[Managed] = []
    targets: list[Target] = []
    runs: list[dict[str, Any]] = []
    streams: dict[str, Any] = {}
    t_start = time.monotonic()
    try:
        ups, procs = start_upstreams(workdir, plan, pinning)
        targets = start_targets(workdir, plan, ups, pinning, info, notes)
        body = workdir / "chat.json"
        body.write_bytes(payloads.chat_request())
        # Streams first, on freshly started gateways, so "RSS per stream" is not hidden by heap that
        # the load rounds grew and freed.
        streams = stream_tests(targets, plan, ups)
        runs = load_rounds(targets, plan, pinning, body)
        for target in targets:
            if target.is_gateway:
                info[target.name]["rss_after_load_mb"] = round(rss_bytes(target.pids()) / 2**20, 1)
    finally:
        for target in targets:
            target.stop()
        for proc in procs:
            proc.stop()
        if args.keep_workdir:
            notes.append(f"workdir kept at {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    meta["wall_s"] = round(time.monotonic() - t_start, 1)
    results: dict[str, Any] = {"meta": meta, "targets": info, "runs": runs, "streaming": streams}
    results["summary"] = report.summarise(results)
    results["bar"] = [] if plan.smoke else report.bar(results["summary"], streams, info)
    jpath, mpath = write_results(results, args.out)
    print(mpath.read_text())
    print(f"[bench] wrote {jpath} and {mpath}", file=sys.stderr)
    failed = [n for n, i in info.items() if i.get("error")] + [r["target"] for r in runs if "error" in r]
    return 2 if failed else 0
