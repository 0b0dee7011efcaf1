"""Metrics across ``--workers N``: each worker publishes its snapshot to a shared directory, and
the worker that answers a scrape merges every worker's file with its own live counts.

Why a directory and not Redis: it needs nothing running, costs the request path nothing (a worker
writes its snapshot off the event loop once a second, only when something changed), and a scrape
reads N small files. The supervisor creates the directory (``SLUICE_METRICS_DIR``), hands it to its
workers, and removes it when they have stopped. A worker that exits leaves its last snapshot, so
counters never go backwards while the gateway runs. A scrape sees other workers' counts as of
their last publish (at most ``interval_s`` old); its own are live.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

import msgspec

from sluice.telemetry.prom import Registry, Snapshot, merge, render

log = logging.getLogger("sluice.telemetry")

#: Set by the supervisor of ``--workers N`` for its workers.
DIR_ENV = "SLUICE_METRICS_DIR"
_decode = msgspec.json.Decoder(dict[str, dict[str, object]]).decode


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # readers see the old file or the new one, never half of one


def _read_others(directory: Path, own: Path) -> list[Snapshot]:
    out: list[Snapshot] = []
    for p in sorted(directory.glob("*.json")):
        if p == own:
            continue
        try:
            out.append(_decode(p.read_bytes()))
        except (OSError, msgspec.DecodeError):
            continue  # a worker mid-exit, or a file from another version: skip it this time
    return out


class SnapshotPublisher:
    def __init__(self, registry: Registry, directory: Path | None, *, interval_s: float = 1.0) -> None:
        self._registry = registry
        self._dir = directory
        self._interval = interval_s
        self._own = directory / f"worker-{os.getpid()}.json" if directory is not None else None
        self._task: asyncio.Task[None] | None = None
        self._last: bytes = b""
        #: How many workers the last collection covered (this one included).
        self.workers_seen = 1

    @classmethod
    def from_env(cls, registry: Registry) -> SnapshotPublisher:
        value = os.environ.get(DIR_ENV)
        return cls(registry, Path(value) if value else None)

    @property
    def shared(self) -> bool:
        return self._dir is not None

    def start(self) -> None:
        if self._dir is not None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="sluice-metrics-publisher")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.publish()
            except OSError as exc:
                log.warning("metrics: cannot publish this worker's snapshot (%s)", exc)

    async def publish(self) -> None:
        if self._own is None:
            return
        data = msgspec.json.encode(self._registry.snapshot())
        if data == self._last:
            return
        await asyncio.get_running_loop().run_in_executor(None, _write, self._own, data)
        self._last = data

    async def collect(self, extra: Snapshot | None = None) -> Snapshot:
        """Every worker's counts (this one's live), plus families only this worker reports."""
        mine = self._registry.snapshot()
        if self._dir is None or self._own is None:
            snap = mine
        else:
            others = await asyncio.get_running_loop().run_in_executor(
                None, _read_others, self._dir, self._own
            )
            snap = merge([mine, *others])
            self.workers_seen = 1 + len(others)
        if extra:
            snap = {**snap, **extra}
        return snap

    async def exposition(self, extra: Snapshot | None = None) -> str:
        return render(await self.collect(extra))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(OSError):
            await self.publish()  # the final counts stay for the other workers' scrapes
