"""The benchmark harness must not rot: run its smoke mode against the real gateway.

Smoke mode takes seconds, uses the pure-Python upstream and load generator (no apt packages needed),
skips LiteLLM and checks no thresholds. These tests check the shape of what it writes and that no
request failed -- never a speed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUN = REPO / "bench" / "run.py"

pytestmark = pytest.mark.e2e


def _run_smoke(out: Path, *extra: str) -> dict:
    proc = subprocess.run(
        [sys.executable, str(RUN), "--smoke", "--out", str(out), *extra],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 0, f"bench smoke failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    latest = out / "latest.json"
    assert latest.exists(), proc.stderr[-2000:]
    assert (out / "latest.md").read_text().startswith("# Sluice benchmark (smoke)")
    return json.loads(latest.read_text())


def _check(results: dict, loadgen: str) -> None:
    meta = results["meta"]
    assert meta["mode"] == "smoke"
    assert meta["loadgen"] == loadgen
    assert meta["concurrency"] == [1, 10]
    assert set(results["targets"]) == {"sluice", "direct"}
    for name, info in results["targets"].items():
        assert "error" not in info, f"{name}: {info.get('error')}"
    sluice = results["targets"]["sluice"]
    assert sluice["rss_idle_mb"] > 0
    assert sluice["rss_after_load_mb"] > 0

    runs = results["runs"]
    assert {(r["target"], r["concurrency"]) for r in runs} == {
        (t, c) for t in ("sluice", "direct") for c in (1, 10)
    }
    for r in runs:
        assert "error" not in r, r
        assert r["requests"] > 0, r
        assert r["error_total"] == 0, r
        assert r["rps"] > 0
        lat = r["latency_ms"]
        assert 0 < lat["p50"] <= lat["p99"] <= lat["max"]
    for r in runs:
        if r["target"] == "sluice":
            assert r["cpu_us_per_req"] > 0
            assert r["rss_peak_mb"] > 0
            # Each Sluice cell waits for its request log; its throughput is charged with that wait.
            assert r["log_drain_s"] >= 0
            assert 0 < r["rps_sustained"] <= r["rps"] * 1.01

    summary = results["summary"]
    assert set(summary["per_target"]["sluice"]) == {"1", "10"}
    assert summary["per_target"]["sluice"]["10"]["rps_sustained_median"] > 0
    added = summary["added_latency_c1"]["sluice"]
    assert isinstance(added["p50_ms"], float) and isinstance(added["p99_ms"], float)
    assert "p50_ms" in summary["ttft_overhead"]["sluice"]
    assert results["bar"] == []  # smoke mode checks no thresholds

    for name in ("sluice", "direct"):
        s = results["streaming"][name]
        assert "error" not in s, s
        assert s["ttft"]["complete"] == s["ttft"]["streams"] > 0, s["ttft"]
        assert s["ttft"]["ttft_ms"]["p50"] > 0
        conc = s["concurrent"]
        assert conc["every_chunk"] is True, conc
        assert conc["complete"] == conc["streams"] == conc["max_open"], conc
    assert results["streaming"]["sluice"]["concurrent"]["rss_per_stream_kb"] is not None


def test_smoke_python_fallback(tmp_path: Path) -> None:
    """Always runs (CI too): pure-Python upstream and load generator."""
    _check(_run_smoke(tmp_path, "--loadgen", "python", "--upstream", "python"), "python")


def test_smoke_wrk_nginx(tmp_path: Path) -> None:
    """The full run's tools (wrk + its Lua script, the generated nginx config) on a smoke budget."""
    missing = [
        tool
        for tool in ("wrk", "nginx")
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists()
    ]
    if missing:
        if os.environ.get("CI"):
            pytest.skip(
                f"{', '.join(missing)} not installed on this CI machine; the Python smoke covers the harness"
            )
        pytest.skip(f"{', '.join(missing)} not installed (apt-get install nginx-light wrk)")
    _check(_run_smoke(tmp_path, "--loadgen", "wrk", "--upstream", "nginx"), "wrk")
