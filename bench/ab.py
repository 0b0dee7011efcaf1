"""Two builds of Sluice in one run: ``.venv/bin/python bench/ab.py OLD_SRC [ROUNDS]``.

OLD_SRC is the ``src`` directory of another checkout (``git worktree add /tmp/old <commit>``).
Both builds run the bench's Sluice configuration against one nginx upstream, pinned like the full
run; cells alternate (each concurrency in ``AB_CONCURRENCY``, default ``50,1``; old, then new) with
the other build frozen, so the machine's drift hits both alike. Like the full run, each cell ends
once its request log is written and is charged with that wait (req/s) and its CPU. Prints each
cell and the medians. Never part of the test run.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sluice_bench import loadgen, payloads
from sluice_bench.isolation import wait_log_written
from sluice_bench.nginx import start_nginx
from sluice_bench.procs import Pinning, cpu_seconds, free_port
from sluice_bench.targets import StreamShape, Target, Upstreams, start_sluice

Cell = tuple[float, float, float, float]  # req/s, p50 ms, p99 ms, CPU µs/request


def main(old_src: str, rounds: int) -> None:
    pin = Pinning.detect()
    wd = Path(tempfile.mkdtemp(prefix="sluice-ab-"))
    port = free_port()
    ng = start_nginx(wd, port, pin, pin.load)
    fixed = f"http://127.0.0.1:{port}"
    up = Upstreams(fixed, fixed, StreamShape(20, 20), StreamShape(500, 20), "nginx")
    targets: dict[str, Target] = {}
    os.environ["PYTHONPATH"] = old_src  # the old tree's package shadows the installed one
    try:
        targets["old"] = start_sluice(wd / "old", up, pin)
    finally:
        del os.environ["PYTHONPATH"]
    targets["new"] = start_sluice(wd / "new", up, pin)
    body = wd / "body.json"
    body.write_bytes(payloads.chat_request())
    cells: dict[tuple[str, int], list[Cell]] = {}
    try:
        conc = [int(c) for c in os.environ.get("AB_CONCURRENCY", "50,1").split(",")]
        for rnd in range(rounds):
            for c in conc:
                for name, target in targets.items():
                    cell = _cell(target, [t for n, t in targets.items() if n != name], body, c, pin)
                    cells.setdefault((name, c), []).append(cell)
                    print(f"round {rnd} c={c} {name}: {cell[0]:,.0f} req/s p50 {cell[1]:.3f} ms "
                          f"p99 {cell[2]:.3f} ms CPU {cell[3]:.0f} µs/req", flush=True)  # fmt: skip
        for c in conc:
            old, new = cells[("old", c)], cells[("new", c)]
            med = [
                (statistics.median(x[i] for x in old), statistics.median(x[i] for x in new)) for i in range(4)
            ]
            print(f"c={c} medians: req/s {med[0][0]:,.0f} -> {med[0][1]:,.0f} (x{med[0][1] / med[0][0]:.2f}); "
                  f"p50 {med[1][0]:.3f} -> {med[1][1]:.3f} ms; CPU {med[3][0]:.0f} -> {med[3][1]:.0f} µs/req")  # fmt: skip
    finally:
        for t in targets.values():
            t.stop()
        ng.stop()


def _cell(target: Target, others: list[Target], body: Path, c: int, pin: Pinning) -> Cell:
    for o in others:
        o.pause(True)
    try:
        wait_log_written(target)  # its previous cell's records, so they are not measured here
        cpu0 = cpu_seconds(target.pids())
        spec = loadgen.LoadSpec(
            url=target.url("chat"), body_file=body, key=target.key, concurrency=c, duration_s=6
        )
        res = loadgen.run(spec, tool="wrk", pinning=pin)
        _, drain_s = wait_log_written(target)  # this cell's own records: charged to it
        cpu = cpu_seconds(target.pids()) - cpu0
    finally:
        for o in others:
            o.pause(False)
    j = res.to_json()
    rps = j["requests"] / (res.duration_s + drain_s) if res.duration_s else 0.0
    return rps, j["latency_ms"]["p50"], j["latency_ms"]["p99"], cpu * 1e6 / max(1, j["requests"])


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 4)
