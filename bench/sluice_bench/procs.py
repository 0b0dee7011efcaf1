"""Processes: start pinned to cores, wait for a port, read CPU and memory of a process tree from /proc."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout:.0f}s")


@dataclass(frozen=True)
class Pinning:
    """Which cores the gateway and the load side (load generator, upstreams, client) get."""

    gateway: tuple[int, ...]
    load: tuple[int, ...]

    @property
    def enabled(self) -> bool:
        return bool(self.gateway) and shutil.which("taskset") is not None

    @staticmethod
    def detect() -> Pinning:
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < 2:
            return Pinning((), ())
        return Pinning((cores[0],), tuple(cores[1:]))

    def prefix(self, cores: tuple[int, ...]) -> list[str]:
        if not self.enabled or not cores:
            return []
        return ["taskset", "-c", ",".join(str(c) for c in cores)]

    def describe(self) -> dict[str, object]:
        return {"enabled": self.enabled, "gateway_cores": list(self.gateway), "load_cores": list(self.load)}


@dataclass
class Managed:
    """A child process we started; stopped with SIGTERM to its own process group, then SIGKILL."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tree(self) -> list[int]:
        return process_tree(self.proc.pid)

    def signal_group(self, signum: int) -> None:
        """SIGSTOP / SIGCONT the whole process group (a gateway and its workers)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signum)

    def stop(self, grace: float = 10.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        # Workers that outlived their parent are still in the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def tail(self, n: int = 30) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])


def start(
    name: str,
    argv: Sequence[str],
    *,
    log_dir: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    cores: tuple[int, ...] = (),
    pinning: Pinning | None = None,
) -> Managed:
    log = log_dir / f"{name}.log"
    prefix = pinning.prefix(cores) if pinning is not None else []
    with log.open("ab") as fh:
        proc = subprocess.Popen(
            [*prefix, *argv],
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    return Managed(name, proc, log)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm may hold spaces and parentheses: split after the last ')'.
    return raw[raw.rfind(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is None:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    out: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        if _stat_fields(pid) is None:
            continue
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU of the given processes (not of their reaped children)."""
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / CLK_TCK


def rss_bytes(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
                break
    return total


def core_busy_ticks() -> dict[int, tuple[int, int]]:
    """Per core: (busy ticks, total ticks) from /proc/stat."""
    out: dict[int, tuple[int, int]] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        name, *vals = line.split()
        nums = [int(v) for v in vals]
        idle = nums[3] + (nums[4] if len(nums) > 4 else 0)
        out[int(name[3:])] = (sum(nums[:8]) - idle, sum(nums[:8]))
    return out


def core_utilisation(
    before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]
) -> dict[int, float]:
    util: dict[int, float] = {}
    for core, (busy1, total1) in after.items():
        busy0, total0 = before.get(core, (0, 0))
        span = total1 - total0
        util[core] = round((busy1 - busy0) / span, 3) if span > 0 else 0.0
    return util


class TreeSampler:
    """Samples the summed RSS of some processes in a background thread; keeps the peak.

    ``pids`` is called again every second so workers started late are counted.
    """

    def __init__(self, pids: Callable[[], list[int]], interval: float = 0.1) -> None:
        import threading

        self.pids_fn = pids
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        pids = self.pids_fn()
        n = 0
        while not self._stop.is_set():
            n += 1
            if n % 10 == 0:
                pids = self.pids_fn()
            self.peak = max(self.peak, rss_bytes(pids))
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
