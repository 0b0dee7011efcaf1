"""Shared test helpers: service availability (Redis, PostgreSQL) with CI's fail-don't-skip rule."""

from __future__ import annotations

import os
import socket

import pytest

IN_CI = os.environ.get("CI") == "true"


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def require_service(name: str, port: int) -> None:
    """Skip when a service is missing — except in CI, where a missing service fails the run."""
    if port_open(port):
        return
    if IN_CI:
        pytest.fail(f"{name} is not reachable on 127.0.0.1:{port} (CI=true: missing services fail)")
    pytest.skip(f"{name} is not reachable on 127.0.0.1:{port}")


@pytest.fixture
def redis_url() -> str:
    require_service("redis", 6379)
    return "redis://127.0.0.1:6379/0"


@pytest.fixture
def postgres_url() -> str:
    require_service("postgresql", 5432)
    return "postgresql://postgres@127.0.0.1:5432/test"
