"""bench/console_scale.py must not rot: a tiny run on SQLite against the real gateway (the shape of
its report, never a speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def test_console_scale_runs_small(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "console_scale.py"), "--records", "3000", "--runs", "1",
         "--backends", "sqlite", "--keep", str(tmp_path)],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout[: proc.stdout.rindex("]") + 1])
    (sqlite,) = results
    assert sqlite["records"] == 3000 and sqlite["rollup_rows"]["rollup_hour"] > 0
    assert set(sqlite["screens"]) >= {"overview (24h)", "reliability (24h)", "requests, first screen"}
    assert all(s["bytes"] > 2 for s in sqlite["screens"].values())
