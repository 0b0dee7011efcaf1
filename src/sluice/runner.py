"""Run the gateway: one process on uvloop, or N worker processes sharing the port (SO_REUSEPORT).
At the top with ``app`` (it starts what ``app`` wires), so ``server/`` never imports upward."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from sluice.app import dispatcher, running
from sluice.config.loader import policy_warnings
from sluice.config.model import Config
from sluice.errors import ConfigError, ServiceUnavailable
from sluice.server.listener import close_listener
from sluice.server.protocol import HttpProtocol, ServerState
from sluice.server.services import Services
from sluice.server.tls import server_context
from sluice.telemetry.logs import configure_logging
from sluice.telemetry.workers import DIR_ENV as METRICS_DIR_ENV

log = logging.getLogger("sluice")

_WORKER_ENV = "SLUICE_WORKER"


class CannotListen(Exception):
    """The address cannot be bound; the message is one line naming it and what to do."""


def _listen_error(host: str, port: int, exc: OSError) -> CannotListen:
    why = {
        errno.EADDRINUSE: "the port is in use (another process listens on it)",
        errno.EACCES: "permission denied (ports below 1024 need privileges)",
        errno.EADDRNOTAVAIL: f"{host} is not an address of this machine",
    }.get(exc.errno or 0, exc.strerror or str(exc))
    return CannotListen(
        f"cannot listen on {host}:{port}: {why}; choose another port with --port (or server.port)"
    )


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported platform
        return asyncio.new_event_loop()


def run(
    config: Config, config_path: Path, *, host: str | None, port: int | None, workers: int | None
) -> None:
    configure_logging(config.logging.level)
    for warning in policy_warnings(config):
        log.warning("%s", warning)
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
    loop = _new_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(serve(config, host, port, reuse_port=n > 1, policy_path=config_path))
    except ServiceUnavailable as exc:
        log.error("%s", exc.message)
        sys.exit(1)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def _freeze_startup_objects() -> None:
    """Move everything start-up made (modules, the policy, the price list, the key index) out of
    the collector's reach, so a full collection no longer walks them; refcounting still frees
    them as before. A/B at c=50 (bench/ab.py): 119 -> 108 CPU us per request, +10% requests/s,
    p99 30 -> 9 ms (the full collections were the tail); at c=200 145 -> 133 us, +8%."""
    gc.collect()
    gc.freeze()


async def serve(
    config: Config, host: str, port: int, *, reuse_port: bool = False, policy_path: Path | None = None
) -> None:
    """Start the services, listen until SIGTERM or SIGINT, then drain and stop. SIGHUP reloads
    the policy file."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with running(config, policy_path=policy_path) as services:
        server_cfg = config.server
        routes = dispatcher()
        tls = server_context(server_cfg.tls) if server_cfg.tls is not None else None
        services.tls_context = tls
        state = ServerState(
            services, routes, max_body=server_cfg.max_body_bytes,
            keepalive_s=server_cfg.keepalive_timeout_s, slow_client_s=server_cfg.client_timeout_s,
            refusal_body=routes.refusal_body,
        )  # fmt: skip
        _freeze_startup_objects()  # before the first connection: nothing of a request is frozen
        try:
            server = await loop.create_server(
                lambda: HttpProtocol(state), host, port, reuse_port=reuse_port, backlog=2048, ssl=tls
            )
        except OSError as exc:
            raise _listen_error(host, port, exc) from None
        if services.reloader is not None:
            services.reloader.on_install.append(lambda cfg: _follow(state, cfg))
        reloads: set[asyncio.Task[object]] = set()
        loop.add_signal_handler(signal.SIGHUP, _on_sighup, services, reloads)
        if reuse_port and os.environ.get(_WORKER_ENV) is not None and services.reloader is not None:
            # POST /admin/reload reaches one worker: the supervisor passes a SIGHUP on to all.
            ppid = os.getppid()
            services.reloader.on_admin_reload = lambda: os.kill(ppid, signal.SIGHUP)
        sweeper = loop.create_task(_sweep(state))
        metrics_server = await _metrics_listener(config, state, reuse_port)
        scheme = "https" if tls is not None else "http"
        log.info("sluice listening on %s://%s:%d (pid %d)", scheme, host, port, os.getpid())
        try:
            await stop.wait()
            await _unready(services, stop, services.config.server.drain_s)
            log.info("stopping: draining %d connection(s)", len(state.connections))
            await drain(server, state, services.config.server.shutdown_grace_s)
        finally:
            loop.remove_signal_handler(signal.SIGHUP)
            sweeper.cancel()
            server.close()
            if metrics_server is not None:
                metrics_server.close()


async def _metrics_listener(
    config: Config, main: ServerState, reuse_port: bool
) -> asyncio.AbstractServer | None:
    """``metrics.listen``: a second port that serves ``/metrics`` only."""
    address = config.metrics.listen_address()
    if address is None:
        return None
    from sluice.server.dispatch import Dispatcher
    from sluice.server.metrics_routes import routes

    state = ServerState(
        main.services, Dispatcher(routes), max_body=4096,
        keepalive_s=config.server.keepalive_timeout_s, slow_client_s=config.server.client_timeout_s,
    )  # fmt: skip
    server = await asyncio.get_running_loop().create_server(
        lambda: HttpProtocol(state), address[0], address[1], reuse_port=reuse_port
    )
    log.info("metrics on http://%s:%d/metrics", *address)
    return server


def _follow(state: ServerState, config: Config) -> None:
    """A reloaded policy's listener settings, for the next request on any connection."""
    state.max_body = config.server.max_body_bytes
    state.keepalive_s = config.server.keepalive_timeout_s
    state.slow_client_s = config.server.client_timeout_s


def _on_sighup(services: Services, tasks: set[asyncio.Task[object]]) -> None:
    if services.reloader is None or services.stopping:
        return
    task: asyncio.Task[object] = asyncio.get_running_loop().create_task(services.reloader.reload("SIGHUP"))
    tasks.add(task)  # held until done (the loop keeps only weak references)
    task.add_done_callback(tasks.discard)


async def _unready(services: Services, stop: asyncio.Event, drain_s: float) -> None:
    """Fail /readyz and keep serving for ``drain_s``, so the load balancer stops sending here
    before the listener closes. A second SIGTERM / SIGINT ends the wait."""
    services.stopping = True
    if drain_s <= 0:
        return
    log.info("stopping: /readyz fails now; serving for %.1f s more (server.drain_s)", drain_s)
    stop.clear()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=drain_s)


async def drain(server: asyncio.AbstractServer, state: ServerState, grace_s: float) -> None:
    """Stop accepting; answer what is in flight (``connection: close``), for up to ``grace_s``."""
    state.services.draining = True
    await close_listener(server)  # what the kernel had queued is accepted first, then answered
    for conn in list(state.connections):
        conn.close_if_idle()
    if state.connections:
        try:
            await asyncio.wait_for(state.idle.wait(), timeout=grace_s)
        except TimeoutError:
            log.warning("grace period over: closing %d connection(s) still busy", len(state.connections))
            for conn in list(state.connections):
                conn.cancel()
            await asyncio.sleep(0)


async def _sweep(state: ServerState) -> None:
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(1.0)
        state.sweep(loop.time())


def _supervise(config_path: Path, host: str, port: int, n: int) -> None:
    """Start N workers on one port and pass SIGTERM/SIGINT on to them."""
    shared = tempfile.mkdtemp(prefix="sluice-metrics-")  # each worker's counts, merged per scrape
    env = {**os.environ, _WORKER_ENV: "1", METRICS_DIR_ENV: shared}
    cmd = [sys.executable, "-m", "sluice.cli", "serve", "--config", str(config_path), "--host", host,
           "--port", str(port), "--workers", str(n)]  # fmt: skip
    procs = [subprocess.Popen(cmd, env=env) for _ in range(n)]  # noqa: S603 - our own interpreter and module

    def forward(signum: int, _frame: object) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, forward)
    codes = [p.wait() for p in procs]
    shutil.rmtree(shared, ignore_errors=True)
    if any(codes):
        sys.exit(max(codes))
