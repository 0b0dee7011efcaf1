"""Hot reload of the policy file: SIGHUP, ``POST /admin/reload``, ``sluice reload``, and (with
``server.watch_policy``) a change of the file.

The file is read once; its bytes are hashed (the policy version every record carries) and
parsed; the policy is checked whole (what ``check-config`` checks, secrets included) and built
(adapters, routes, limits; see ``app.build_policy``); only then is it swapped in, in one step, for
new requests. Requests in flight keep the policy they started with. A policy that fails changes
nothing but the error report (the log, ``/readyz`` and ``/admin/policy``). Settings the running
process cannot change are reported as needing a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from sluice.config.loader import load_config_bytes, policy_version
from sluice.config.model import Config
from sluice.errors import SluiceError
from sluice.server.services import Services
from sluice.server.tls import load_certificate, server_context
from sluice.telemetry.metrics import METRICS

log = logging.getLogger("sluice.reload")

#: How often ``server.watch_policy`` looks at the file (a stat; the hash decides).
WATCH_INTERVAL_S = 1.0


class PolicyValue(Protocol):
    @property
    def config(self) -> Config: ...

    @property
    def version(self) -> str: ...


P = TypeVar("P", bound=PolicyValue)


def restart_required(running: Config, new: Config) -> list[str]:
    """Settings the process took at start and cannot change while it runs."""
    r, n = running, new
    pairs = {
        "server.host": (r.server.host, n.server.host),
        "server.port": (r.server.port, n.server.port),
        "server.workers": (r.server.workers, n.server.workers),
        "server.key_secret": (r.server.key_secret, n.server.key_secret),
        "server.tls": (r.server.tls is None, n.server.tls is None),  # on/off; the files reload
        "store.url": (r.store.url, n.store.url),
        "store.journal": (r.store.journal, n.store.journal),
        "store.retention_days": (r.store.retention_days, n.store.retention_days),
        "store.flush_interval_s": (r.store.flush_interval_s, n.store.flush_interval_s),
        "store.batch_size": (r.store.batch_size, n.store.batch_size),
        "store.queue_size": (r.store.queue_size, n.store.queue_size),
        "store.key_refresh_s": (r.store.key_refresh_s, n.store.key_refresh_s),
        "store.responses_retention_days": (
            r.store.responses_retention_days,
            n.store.responses_retention_days,
        ),
        "state.url": (r.state.url, n.state.url),
        "state.on_outage": (r.state.on_outage, n.state.on_outage),
        "limits.state_timeout_s": (r.limits.state_timeout_s, n.limits.state_timeout_s),
        "limits.state_retry_s": (r.limits.state_retry_s, n.limits.state_retry_s),
        "logging.level": (r.logging.level, n.logging.level),
    }
    return [name for name, (old, now) in pairs.items() if old != now]


class Reloader(Generic[P]):
    def __init__(
        self,
        svc: Services,
        policy: P,
        path: Path | None,
        *,
        build: Callable[[Config, str, P], Awaitable[P]],
        install: Callable[[Services, P], None],
        retire: Callable[[P], Awaitable[None]],
    ) -> None:
        self._svc = svc
        self.policy = policy
        self._boot = policy.config
        self._path = path
        self._build, self._install, self._retire = build, install, retire
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()
        self._retired: list[P] = []
        self._watch: asyncio.Task[None] | None = None
        self.loaded_at = time.time()
        self.reloads = 0
        self.failures = 0
        self.last_error: dict[str, Any] | None = None
        self.restart_required: list[str] = []
        #: Called after a reload asked of this process alone (``POST /admin/reload``) was applied:
        #: with ``--workers N`` it tells the supervisor, which sends SIGHUP to every worker.
        self.on_admin_reload: Callable[[], None] | None = None
        #: Called with each policy installed: settings held outside the policy value (the
        #: listener's body cap and timeouts) follow it.
        self.on_install: list[Callable[[Config], None]] = []

    def view(self) -> dict[str, Any]:
        return {
            "version": self.policy.version, "path": str(self._path) if self._path else None,
            "loaded_at": self.loaded_at, "reloads": self.reloads, "failures": self.failures,
            "last_error": self.last_error, "restart_required": self.restart_required,
            "watch": self._watch is not None,
        }  # fmt: skip

    async def reload(self, source: str) -> tuple[bool, dict[str, Any]]:
        """Load the file again; (applied or unchanged, the view). Never raises for a bad policy."""
        if self._path is None:
            return False, {**self.view(), "error": "the gateway was started without a policy file"}
        async with self._lock:
            try:
                changed = await self._load(source)
            except (SluiceError, OSError) as exc:
                message = (
                    exc.message if isinstance(exc, SluiceError) else f"cannot read the policy file: {exc}"
                )
                self.failures += 1
                self.last_error = {"message": message, "at": time.time(), "source": source}
                log.error("policy reload (%s) refused, still serving version %s: %s",
                          source, self.policy.version, message)  # fmt: skip
                METRICS.policy_reload("refused")
                return False, {**self.view(), "error": message}
        METRICS.policy_reload("applied" if changed else "unchanged")
        if changed:
            log.info("policy reload (%s): now serving version %s", source, self.policy.version)
            if source == "admin" and self.on_admin_reload is not None:
                self.on_admin_reload()
        return True, {**self.view(), "changed": changed}

    async def _load(self, source: str) -> bool:
        assert self._path is not None
        raw = await asyncio.get_running_loop().run_in_executor(None, self._path.read_bytes)
        version = policy_version(raw)
        config = load_config_bytes(raw, str(self._path))
        if version == self.policy.version:
            self._reload_certificate(config)  # a renewed certificate, the policy unchanged
            self.last_error = None
            return False
        new = await self._build(config, version, self.policy)  # checks it as check-config does
        self._reload_certificate(config)
        old, self.policy = self.policy, new
        self._install(self._svc, new)  # from here, new requests get the new policy
        for hook in self.on_install:
            hook(config)
        self.reloads += 1
        self.loaded_at, self.last_error = time.time(), None
        self.restart_required = restart_required(self._boot, config)
        for name in self.restart_required:
            log.warning("policy reload: %s changed; it takes effect at the next restart", name)
        await self._svc.keys.use_teams(config.teams)
        self._retire_later(old)
        return True

    def _reload_certificate(self, config: Config) -> None:
        """Serve the TLS files as they are now to new connections (checked on a fresh context
        first, so a broken renewal leaves the served certificate alone)."""
        live, tls = self._svc.tls_context, config.server.tls
        if live is not None and tls is not None:
            server_context(tls)
            load_certificate(live, tls)

    def _retire_later(self, old: P) -> None:
        """Close the old policy's parts once no request can still be running on it."""

        async def later() -> None:
            await asyncio.sleep(old.config.server.request_timeout_s)
            self._retired.remove(old)
            await self._retire(old)

        self._retired.append(old)
        task = asyncio.create_task(later(), name="sluice-policy-retire")
        task.add_done_callback(self._retiring.discard)
        self._retiring.add(task)

    def watch(self) -> None:
        """Reload when the file changes (``server.watch_policy``)."""
        if self._path is not None and self._watch is None:
            self._watch = asyncio.create_task(self._watch_loop(self._path), name="sluice-policy-watch")

    async def _watch_loop(self, path: Path) -> None:
        seen = _stat(path)
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            now = _stat(path)
            if now != seen:
                seen = now
                await self.reload("watch")

    async def stop(self) -> None:
        """At shutdown: stop watching; close every replaced policy now."""
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        for task in list(self._retiring):
            task.cancel()
        await asyncio.gather(*self._retiring, return_exceptions=True)
        for old in self._retired:
            with contextlib.suppress(Exception):
                await self._retire(old)
        self._retired.clear()


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)  # follows symlinks: a Kubernetes ConfigMap swaps its target
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)
