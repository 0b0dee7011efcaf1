"""Outside binaries the telemetry tests use (Debian's ``prometheus`` package: promtool, prometheus)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import IN_CI

REPO = Path(__file__).resolve().parents[2]


def require_binary(name: str) -> str:
    """The binary's path; skip without it — except in CI, where a missing binary fails the run."""
    path = shutil.which(name)
    if path is not None:
        return path
    message = f"{name} is not installed (Debian package 'prometheus', see scripts/apt-packages.txt)"
    if IN_CI:
        pytest.fail(message + " (CI=true: missing tools fail)")
    pytest.skip(message)


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("promtool"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
