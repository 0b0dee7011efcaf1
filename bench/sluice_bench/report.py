"""Turn raw runs into the summary, the bar check and the markdown table. Pure: dicts in, dicts/str out."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from typing import Any

Run = dict[str, Any]

MAIN = "sluice"
RIVAL = "litellm"
FLOOR = "direct"


def _median(vals: Iterable[float | None]) -> float | None:
    xs = [v for v in vals if v is not None]
    return round(statistics.median(xs), 4) if xs else None


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def _cell(runs: list[Run], target: str, c: int) -> list[Run]:
    return [r for r in runs if r["target"] == target and r["concurrency"] == c and "error" not in r]


def per_target(runs: list[Run], targets: list[str], concurrency: list[int]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for t in targets:
        rows: dict[str, Any] = {}
        for c in concurrency:
            cell = _cell(runs, t, c)
            if not cell:
                continue
            rps = [r["rps"] for r in cell]
            rows[str(c)] = {
                "rounds": len(cell),
                "rps_median": _median(rps),
                "rps_min": min(rps),
                "rps_max": max(rps),
                # Sluice: requests / (cell + time its request log took to finish writing them).
                "rps_sustained_median": _median(r.get("rps_sustained") for r in cell),
                "p50_ms": _median(r["latency_ms"]["p50"] for r in cell),
                "p99_ms": _median(r["latency_ms"]["p99"] for r in cell),
                "errors": sum(r["error_total"] for r in cell),
                "requests": sum(r["requests"] for r in cell),
                "cpu_us_per_req": _median(r.get("cpu_us_per_req") for r in cell),
                "rss_peak_mb": max((r["rss_peak_mb"] for r in cell if r.get("rss_peak_mb")), default=None),
                "loadgen_saturated_rounds": sum(1 for r in cell if r.get("loadgen_saturated")),
                "load_core_saturated_rounds": sum(1 for r in cell if r.get("load_core_saturated")),
                "noisy_rounds": sum(1 for r in cell if r.get("noisy")),
            }
        out[t] = rows
    return out


def added_latency(runs: list[Run], targets: list[str], c: int = 1) -> dict[str, dict[str, Any]]:
    """Per gateway and round: its c=1 latency minus direct's in the same round."""
    out: dict[str, dict[str, Any]] = {}
    rounds = sorted({r["round"] for r in runs})
    for t in targets:
        if t == FLOOR:
            continue
        per_round = []
        for rnd in rounds:
            gw = [r for r in _cell(runs, t, c) if r["round"] == rnd]
            fl = [r for r in _cell(runs, FLOOR, c) if r["round"] == rnd]
            if not gw or not fl:
                continue
            per_round.append(
                {
                    "round": rnd,
                    "p50_ms": round(gw[0]["latency_ms"]["p50"] - fl[0]["latency_ms"]["p50"], 4),
                    "p99_ms": round(gw[0]["latency_ms"]["p99"] - fl[0]["latency_ms"]["p99"], 4),
                }
            )
        if per_round:
            out[t] = {
                "per_round": per_round,
                "p50_ms": _median(x["p50_ms"] for x in per_round),
                "p99_ms": _median(x["p99_ms"] for x in per_round),
            }
    return out


def ratios(runs: list[Run], concurrency: list[int], added: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Sluice / LiteLLM per round: throughput at each concurrency, added latency at c=1."""
    rounds = sorted({r["round"] for r in runs})
    out = []
    for rnd in rounds:
        row: dict[str, Any] = {"round": rnd, "rps": {}}
        for c in concurrency:
            a = [r for r in _cell(runs, MAIN, c) if r["round"] == rnd]
            b = [r for r in _cell(runs, RIVAL, c) if r["round"] == rnd]
            if a and b:
                row["rps"][str(c)] = _ratio(a[0].get("rps_sustained") or a[0]["rps"], b[0]["rps"])
        main = {x["round"]: x for x in added.get(MAIN, {}).get("per_round", [])}
        rival = {x["round"]: x for x in added.get(RIVAL, {}).get("per_round", [])}
        if rnd in main and rnd in rival:
            row["added_latency_p50"] = _ratio(main[rnd]["p50_ms"], rival[rnd]["p50_ms"])
            row["added_latency_p99"] = _ratio(main[rnd]["p99_ms"], rival[rnd]["p99_ms"])
        if row["rps"] or "added_latency_p50" in row:
            out.append(row)
    return out


def streaming_overhead(streaming: dict[str, Any]) -> dict[str, Any]:
    floor = streaming.get(FLOOR, {}).get("ttft", {}).get("ttft_ms", {})
    out: dict[str, Any] = {}
    for t, res in streaming.items():
        if t == FLOOR or "ttft" not in res:
            continue
        mine = res["ttft"].get("ttft_ms", {})
        out[t] = {
            "p50_ms": None
            if mine.get("p50") is None or floor.get("p50") is None
            else round(mine["p50"] - floor["p50"], 3),
            "p99_ms": None
            if mine.get("p99") is None or floor.get("p99") is None
            else round(mine["p99"] - floor["p99"], 3),
        }
    return out


def _check(name: str, value: float | None, limit: float, *, at_most: bool) -> dict[str, Any]:
    ok = None if value is None else (value <= limit if at_most else value >= limit)
    return {"figure": name, "value": value, "limit": ("≤ " if at_most else "≥ ") + f"{limit:g}", "pass": ok}


def bar(summary: dict[str, Any], streaming: dict[str, Any], targets: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's bar, on medians across rounds. Benchmark figures, never a test's assertion."""
    main = summary["per_target"].get(MAIN, {})
    rival = summary["per_target"].get(RIVAL, {})
    added = summary["added_latency_c1"].get(MAIN, {})
    stream = streaming.get(MAIN, {}).get("concurrent", {})
    ttft = summary["ttft_overhead"].get(MAIN, {})
    # Charged with writing its own request log (the lower figure), so a log left behind cannot help.
    rps50 = main.get("50", {}).get("rps_sustained_median") or main.get("50", {}).get("rps_median")
    checks = [
        _check("Sluice req/s at c=50 (1 process, request log written)", rps50, 5000, at_most=False),
        _check(
            "Sluice / LiteLLM req/s at c=50",
            _ratio(rps50, rival.get("50", {}).get("rps_median")),
            25,
            at_most=False,
        ),
        _check("added latency c=1 p50 (ms)", added.get("p50_ms"), 0.3, at_most=True),
        _check("added latency c=1 p99 (ms)", added.get("p99_ms"), 2.0, at_most=True),
        _check(
            f"RSS per stream, {stream.get('streams', 0):,} concurrent streams (KB)",
            stream.get("rss_per_stream_kb"),
            40,
            at_most=True,
        ),
        _check("TTFT overhead p50 (ms)", ttft.get("p50_ms"), 1.0, at_most=True),
        _check("idle RSS (MB)", targets.get(MAIN, {}).get("rss_idle_mb"), 80, at_most=True),
    ]
    complete = stream.get("every_chunk")
    checks.append(
        {
            "figure": "all streams complete with every chunk",
            "value": f"{stream.get('complete')}/{stream.get('streams')}" if stream else None,
            "limit": "all",
            "pass": complete if stream else None,
        }
    )
    return checks


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    runs: list[Run] = results["runs"]
    names = list(results["targets"])
    conc: list[int] = results["meta"]["concurrency"]
    added = added_latency(runs, names)
    summary = {
        "per_target": per_target(runs, names, conc),
        "added_latency_c1": added,
        "ratios_sluice_over_litellm": ratios(runs, conc, added),
        "ttft_overhead": streaming_overhead(results.get("streaming", {})),
    }
    return summary


# ---------------------------------------------------------------------------------------- markdown


def _f(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _table(head: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(_f(c) if not isinstance(c, str) else c for c in row) + " |" for row in rows]
    return lines


def _grouped(runs: list[Run], pred: Callable[[Run], bool]) -> str:
    """``target c=1 (3/3 rounds), c=10 (1/3); other ...`` for the runs matching ``pred``."""
    by: dict[str, dict[int, list[int]]] = {}
    rounds = len({r["round"] for r in runs})
    for r in runs:
        if pred(r):
            by.setdefault(r["target"], {}).setdefault(r["concurrency"], []).append(r["round"])
    return "; ".join(
        f"{t} " + ", ".join(f"c={c} ({len(rs)}/{rounds} rounds)" for c, rs in cells.items())
        for t, cells in by.items()
    )


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    summary = results["summary"]
    out = [f"# Sluice benchmark ({meta['mode']}) — {meta['started']}", ""]
    out += [
        f"- machine: {meta['machine']['cpus']} cores ({meta['machine']['cpu_model']}), "
        f"{meta['machine']['mem_gb']} GB, {meta['machine']['kernel']}",
        f"- load generator: {meta['loadgen']}; fixed upstream: {meta['upstream']}; paced upstream: Python "
        f"({meta['paced_stream']})",
        "- pinning: "
        + (
            f"gateway on core(s) {meta['pinning']['gateway_cores']}, load generator + upstreams + stream client "
            f"on core(s) {meta['pinning']['load_cores']} (taskset)"
            if meta["pinning"]["enabled"]
            else "none"
        ),
        f"- {meta['rounds']} interleaved round(s) x {meta['duration_s']} s per cell; concurrency "
        f"{', '.join(str(c) for c in meta['concurrency'])}; versions: "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v),
        "",
        "## Throughput and latency (median over rounds)",
        "",
    ]
    rows = []
    for t, cells in summary["per_target"].items():
        for c, s in cells.items():
            sat = ", ".join(
                f"{label} {n}/{s['rounds']}"
                for label, n in (
                    ("wrk", s["loadgen_saturated_rounds"]),
                    ("core", s["load_core_saturated_rounds"]),
                )
                if n
            )
            rows.append(
                [
                    t,
                    int(c),
                    _f(s["rps_median"], 0),
                    _f(s.get("rps_sustained_median"), 0),
                    _f(s["p50_ms"], 3),
                    _f(s["p99_ms"], 3),
                    s["errors"],
                    _f(s["cpu_us_per_req"], 0),
                    _f(s["rss_peak_mb"], 1),
                    sat,
                ]
            )
    out += _table(
        [
            "target",
            "c",
            "req/s",
            "req/s, log written",
            "p50 ms",
            "p99 ms",
            "errors",
            "CPU µs/req",
            "RSS peak MB",
            "load side saturated",
        ],
        rows,
    )
    if summary["added_latency_c1"]:
        out += ["", "## Added latency at c=1 (gateway - direct, same round)", ""]
        rows = []
        for t, a in summary["added_latency_c1"].items():
            for pr in a["per_round"]:
                rows.append([t, pr["round"], _f(pr["p50_ms"], 3), _f(pr["p99_ms"], 3)])
            rows.append([f"**{t} median**", "", _f(a["p50_ms"], 3), _f(a["p99_ms"], 3)])
        out += _table(["target", "round", "added p50 ms", "added p99 ms"], rows)
    if summary["ratios_sluice_over_litellm"]:
        conc = [str(c) for c in meta["concurrency"]]
        out += [
            "",
            "## Sluice / LiteLLM per round",
            "",
            "Throughput ratio (higher is better for Sluice) and added-latency ratio (lower is better).",
            "",
        ]
        rows = [
            [
                r["round"],
                *[r["rps"].get(c) for c in conc],
                r.get("added_latency_p50"),
                r.get("added_latency_p99"),
            ]
            for r in summary["ratios_sluice_over_litellm"]
        ]
        out += _table(["round", *[f"req/s c={c}" for c in conc], "added p50", "added p99"], rows)
    out += ["", "## Memory", ""]
    rows = [
        [t, info.get("rss_idle_mb"), info.get("rss_after_load_mb")]
        for t, info in results["targets"].items()
        if info.get("gateway")
    ]
    out += _table(["gateway", "idle RSS MB", "RSS after load MB"], rows)
    streaming = results.get("streaming", {})
    if streaming:
        out += ["", "## Streaming", ""]
        rows = []
        for t, res in streaming.items():
            tt = res.get("ttft", {})
            ov = summary["ttft_overhead"].get(t, {})
            rows.append(
                [
                    t,
                    tt.get("streams"),
                    tt.get("ttft_ms", {}).get("p50"),
                    tt.get("ttft_ms", {}).get("p99"),
                    ov.get("p50_ms"),
                    ov.get("p99_ms"),
                    f"{tt.get('complete')}/{tt.get('streams')}",
                ]
            )
        out += [f"TTFT ({meta['paced_stream']}):", ""]
        out += _table(
            [
                "target",
                "streams",
                "TTFT p50 ms",
                "TTFT p99 ms",
                "overhead p50 ms",
                "overhead p99 ms",
                "complete",
            ],
            rows,
        )
        rows = []
        for t, res in streaming.items():
            cc = res.get("concurrent", {})
            if not cc:
                continue
            rows.append(
                [
                    t,
                    cc.get("streams"),
                    cc.get("max_open"),
                    f"{cc.get('complete')}/{cc.get('streams')}",
                    cc.get("every_chunk"),
                    cc.get("rss_before_mb"),
                    cc.get("rss_peak_mb"),
                    cc.get("rss_per_stream_kb"),
                    cc.get("wall_s"),
                ]
            )
        out += ["", f"Concurrent slow streams ({meta['slow_stream']}):", ""]
        out += _table(
            [
                "target",
                "streams",
                "max open at once",
                "complete",
                "every chunk",
                "RSS before MB",
                "RSS peak MB",
                "KB / stream",
                "wall s",
            ],
            rows,
        )
    if results.get("bar"):
        out += ["", "## The bar (benchmark figures, Sluice single process)", ""]
        out += _table(
            ["figure", "value", "bar", "pass"],
            [
                [
                    b["figure"],
                    _f(b["value"], 3) if isinstance(b["value"], float) else b["value"],
                    b["limit"],
                    b["pass"],
                ]
                for b in results["bar"]
            ],
        )
    notes = list(meta.get("notes", []))
    for t, info in results["targets"].items():
        notes += [f"{t}: {n}" for n in info.get("notes", [])]
        if info.get("error"):
            notes.append(f"{t}: NOT RUN — {info['error']}")
    wrk_sat = _grouped(results["runs"], lambda r: bool(r.get("loadgen_saturated")))
    if wrk_sat:
        notes.append(
            f"load generator saturated (wrk's CPU ≥ 90%: the figure is wrk's limit, not the target's): {wrk_sat}"
        )
    core_sat = _grouped(
        results["runs"], lambda r: bool(r.get("load_core_saturated")) and not r.get("loadgen_saturated")
    )
    if core_sat:
        notes.append(
            "load side's core 95-100% busy (wrk + upstreams + the target's own use of it; expected for direct, "
            f"whose figure is then the load side's limit, and for sluice-w2, which runs on every core): {core_sat}"
        )
    noisy = [r for r in results["runs"] if r.get("noisy")]
    if noisy:
        notes.append(
            "other processes took >25% of the gateway's core during (figure noisy; re-run on a quiet machine): "
            + ", ".join(
                f"{r['target']} c={r['concurrency']} r{r['round']} ({r['gateway_core_foreign']:.0%})"
                for r in noisy
            )
        )
    behind = [r for r in results["runs"] if r.get("log_pending")]
    if behind:
        worst = max(behind, key=lambda r: r["log_pending"])
        notes.append(
            "Sluice's request log was behind right after some cells (records queued in memory, written as the "
            "load eased: its thread runs at the lowest priority on the gateway's one core): "
            f"{len(behind)} of {sum(1 for r in results['runs'] if 'log_pending' in r)} cells, at most "
            f"{worst['log_pending']:,} records ({worst['target']} c={worst['concurrency']} r{worst['round']}, "
            f"written in {worst.get('log_drain_s', 0):.2f} s). Each cell waited for its log: "
            "'req/s, log written' is requests / (cell + that wait), and CPU µs/req includes the writing"
        )
    if notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"
