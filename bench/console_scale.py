"""The console at scale: N generated request records (default 1,000,000) in SQLite and in
PostgreSQL, written through the store's batch insert (so rollups are maintained as in production),
then the real gateway is started on each database and the overview, reliability and first request
screen are timed over HTTP (median and worst of several calls, after one warm-up call).

    .venv/bin/python bench/console_scale.py [--records N] [--backends sqlite,postgres] [--keep DIR]

Targets (issue 15): overview <= 300 ms, reliability <= 300 ms, requests' first screen <= 200 ms.
The PostgreSQL run creates its own database (``sluice_bench_console_<random>``) and drops it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from sluice.store.base import Store, create_store
from sluice.store.records import RequestRecord
from sluice.store.rows import request_to_row

ADMIN = "bench-admin-" + secrets.token_hex(8)
TEAMS = [f"team-{i:02d}" for i in range(20)]
MODELS = [("gpt-4o-mini", "openai"), ("gpt-4o", "openai"), ("claude-haiku-4-5", "anthropic"),
          ("claude-sonnet-4-5", "anthropic"), ("gemini-2.5-flash", "gemini"), ("llama-8b", "gpu"),
          ("mistral-small", "azure"), ("nova-lite", "bedrock")]  # fmt: skip
TAGS = ["search", "summaries", "chat", "agents", "eval", "support", "ingest", "triage", "regulated", "batch"]
SCREENS = {
    "overview (24h)": "/admin/overview?since=24h",
    "overview (7d)": "/admin/overview?since=7d",
    "overview (30d)": "/admin/overview?since=30d",
    "reliability (24h)": "/admin/reliability?since=24h",
    "reliability (7d)": "/admin/reliability?since=7d",
    "requests, first screen": "/admin/requests?limit=50",
    "requests, filtered by team": f"/admin/requests?limit=50&team={TEAMS[3]}",
}
TARGETS = {"overview": 300.0, "reliability": 300.0, "requests": 200.0}


def records(n: int, days: int, seed: int = 15) -> list[RequestRecord]:
    """Traffic shaped like an organisation's: 200 keys in 20 teams, each key with its own users,
    two models and a route; 3 % errors, 5 % retried, tags on half the requests."""
    rnd = random.Random(seed)
    now = time.time()
    keys = [(f"key_{i:04x}", TEAMS[i % len(TEAMS)], [f"user-{i}-{u}" for u in range(10)],
             rnd.sample(MODELS, 2), f"route-{i % 5}") for i in range(200)]  # fmt: skip
    out = []
    for i in range(n):
        key_id, team, users, models, route = keys[rnd.randrange(len(keys))]
        model, provider = models[0] if rnd.random() < 0.8 else models[1]
        failed = rnd.random() < 0.03
        prompt, completion = rnd.randint(20, 4000), 0 if failed else rnd.randint(5, 800)
        out.append(RequestRecord(
            id=f"req_{i:010x}", ts=now - rnd.random() * days * 86400, endpoint="chat", key_id=key_id, team=team,
            user=rnd.choice(users), tags=[rnd.choice(TAGS)] if rnd.random() < 0.5 else [],
            requested_model=model, served_model=model, provider=provider, route=route,
            stream=rnd.random() < 0.4, status=rnd.choice([429, 500, 503]) if failed else 200,
            error_source="provider" if failed else None, error_kind="overloaded" if failed else None,
            prompt_tokens=prompt, completion_tokens=completion, cost_nusd=(prompt * 150 + completion * 600) * 1000,
            latency_ms=rnd.lognormvariate(6.5, 0.6), ttft_ms=rnd.lognormvariate(5.3, 0.5),
            attempts=2 if rnd.random() < 0.05 else 1,
        ))  # fmt: skip
    return out


async def fill(store: Store, n: int, days: int, batch: int = 5000) -> float:
    started = time.perf_counter()
    for start in range(0, n, 100_000):
        chunk = records(min(100_000, n - start), days, seed=start)
        rows = [request_to_row(r) for r in chunk]
        for i, r in enumerate(rows):  # ids unique across chunks
            rows[i] = (f"req_{start + i:010x}", *r[1:])
        for i in range(0, len(rows), batch):
            await store.insert_requests(rows[i : i + batch])
        print(f"  {start + len(rows):>9,} records", file=sys.stderr, flush=True)
    return time.perf_counter() - started


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(url: str, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    teams = "\n".join(f"  {t}: {{budget: {{usd: 1000, period: monthly}}}}" for t in TEAMS)
    policy = workdir / "sluice.yaml"
    policy.write_text(
        f"server: {{admin_key: env:BENCH_ADMIN, key_secret: env:BENCH_SECRET}}\nstore: {{url: '{url}'}}\n"
        "providers: {up: {type: openai, base_url: 'http://127.0.0.1:9/v1', api_key: env:BENCH_SECRET}}\n"
        f"models: {{gpt-4o-mini: {{targets: [{{provider: up, model: gpt-4o-mini}}]}}}}\nteams:\n{teams}\n"
    )
    env = {**os.environ, "BENCH_ADMIN": ADMIN, "BENCH_SECRET": "bench-secret-0123456789"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sluice.cli", "serve", "--config", str(policy), "--port", str(port)],
        env=env, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    for _ in range(400):
        try:
            urllib.request.urlopen(base + "/healthz", timeout=1).close()
            return proc, base
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the gateway did not start")


def timed(base: str, path: str, runs: int) -> tuple[float, float, int]:
    req = urllib.request.Request(base + path, headers={"authorization": f"Bearer {ADMIN}"})
    samples, size = [], 0
    for i in range(runs + 1):
        t0 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=120) as resp:
            size = len(resp.read())
        if i:  # the first call warms the page cache and the connection pool
            samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples), max(samples), size


async def backend(name: str, n: int, days: int, runs: int, keep: Path | None) -> dict[str, object]:
    workdir = keep or Path(tempfile.mkdtemp(prefix=f"sluice-console-{name}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    dbname = ""
    if name == "sqlite":
        url = f"sqlite:///{workdir}/bench.db"
    else:
        import asyncpg

        dbname = "sluice_bench_console_" + secrets.token_hex(4)
        admin = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
        await admin.execute(f'CREATE DATABASE "{dbname}"')
        await admin.close()
        url = f"postgresql://postgres@127.0.0.1:5432/{dbname}"
    try:
        store = create_store(url)
        await store.open()
        print(f"{name}: writing {n:,} records ...", file=sys.stderr)
        fill_s = await fill(store, n, days)
        rollup_rows = {t: (await store.fetch(f"SELECT count(*) FROM {t}"))[0][0]
                       for t in ("rollup_hour", "rollup_tag_hour", "rollup_user_hour", "rollup_latency_hour", "rollup_day")}  # fmt: skip
        await store.close()
        proc, base = serve(url, workdir)
        try:
            screens = {label: timed(base, path, runs) for label, path in SCREENS.items()}
        finally:
            proc.terminate()
            proc.wait(20)
    finally:
        if dbname:
            import asyncpg

            admin = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
            await admin.execute(f'DROP DATABASE "{dbname}" WITH (FORCE)')
            await admin.close()
    return {"backend": name, "records": n, "fill_s": round(fill_s, 1), "rollup_rows": rollup_rows,
            "screens": {k: {"median_ms": round(v[0], 1), "max_ms": round(v[1], 1), "bytes": v[2]}
                        for k, v in screens.items()}}  # fmt: skip


def report(results: list[dict[str, object]]) -> str:
    lines = ["| backend | screen | median ms | worst ms | target ms |", "| --- | --- | ---: | ---: | ---: |"]
    for r in results:
        for label, v in r["screens"].items():  # type: ignore[attr-defined]
            target = next(t for k, t in TARGETS.items() if label.startswith(k))
            lines.append(f"| {r['backend']} | {label} | {v['median_ms']} | {v['max_ms']} | {target:.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=30, help="the records are spread over this many days")
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--keep", type=Path, help="keep the SQLite database and policy in this directory")
    args = ap.parse_args()
    results = [asyncio.run(backend(b, args.records, args.days, args.runs, args.keep))
               for b in args.backends.split(",")]  # fmt: skip
    print(json.dumps(results, indent=2))
    print(report(results))


if __name__ == "__main__":
    main()
