"""scripts/bootstrap says what it is doing (a first install used to print nothing for 20 s)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Stands in for python3 and the venv's python: records each call, creates the venv, installs nothing.
STUB = """#!/bin/sh
echo "$@" >> "$STUB_LOG"
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then mkdir -p "$3/bin"; cp "$0" "$3/bin/python"; fi
exit 0
"""


def test_bootstrap_reports_each_step(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "bootstrap", tmp_path / "scripts" / "bootstrap")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    stub = tmp_path / "python-stub"
    stub.write_text(STUB)
    stub.chmod(0o755)
    env = {**os.environ, "PYTHON": str(stub), "STUB_LOG": str(tmp_path / "calls.log")}

    def run() -> str:
        out = subprocess.run(
            ["bash", str(tmp_path / "scripts" / "bootstrap")],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        return out.stderr

    first = run()
    lines = [ln for ln in first.splitlines() if ln.startswith("bootstrap:")]
    assert [ln.split()[1] for ln in lines] == ["creating", "upgrading", "installing", "done"]
    assert "[dev]" in lines[2] and "20 s" in lines[2]
    calls = (tmp_path / "calls.log").read_text()
    assert "-m pip install --quiet -e .[dev]" in calls
    assert "up to date" in run()  # nothing to do: says so
