"""Run the gateway: one process on uvloop, or N worker processes sharing the port (SO_REUSEPORT)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from aiohttp import web

from sluice.config.model import Config
from sluice.errors import ConfigError
from sluice.telemetry.logs import configure_logging

log = logging.getLogger("sluice")

_WORKER_ENV = "SLUICE_WORKER"


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported platform
        return asyncio.new_event_loop()


def run(
    config: Config, config_path: Path, *, host: str | None, port: int | None, workers: int | None
) -> None:
    from sluice.app import create_app

    configure_logging(config.logging.level)
    host = host or config.server.host
    port = port if port is not None else config.server.port
    n = workers or config.server.workers
    if n > 1 and os.environ.get(_WORKER_ENV) is None:
        if config.state.url.startswith("memory:"):
            raise ConfigError(
                "--workers > 1 needs shared state: set state.url to redis://... in the policy file "
                "(in-memory limits and budgets would be multiplied by the number of workers)"
            )
        _supervise(config_path, host, port, n)
        return
    log.info("sluice listening on http://%s:%d (pid %d)", host, port, os.getpid())
    web.run_app(
        create_app(config), host=host, port=port, loop=_new_loop(), access_log=None, print=None,
        shutdown_timeout=config.server.shutdown_grace_s, reuse_port=n > 1, backlog=2048,
    )  # fmt: skip


def _supervise(config_path: Path, host: str, port: int, n: int) -> None:
    """Start N workers on one port and pass SIGTERM/SIGINT on to them."""
    env = {**os.environ, _WORKER_ENV: "1"}
    cmd = [sys.executable, "-m", "sluice.cli", "serve", "--config", str(config_path), "--host", host,
           "--port", str(port), "--workers", str(n)]  # fmt: skip
    procs = [subprocess.Popen(cmd, env=env) for _ in range(n)]  # noqa: S603 - our own interpreter and module

    def forward(signum: int, _frame: object) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [p.wait() for p in procs]
    if any(codes):
        sys.exit(max(codes))
