"""The request log's journal: every finished record is on disk before its answer is sent.

The writer keeps records in memory until a batch reaches the database. A ``kill -9`` (or an OOM
kill, a segfault) between the answer and the batch would lose them; the journal is what makes
that impossible. Each record is appended to the current segment (``<base>.journal.<n>``, JSON
lines like the spool) with one ``write(2)`` on the event loop, before the record is handed on, and
so before the answer's last byte leaves: once ``write`` returns the bytes are in the kernel's page
cache, which survives the process.

The fsync policy: a segment is closed at each flush cycle (``store.flush_interval_s``) and
``fdatasync``-ed by a thread, off the event loop. So a process crash loses nothing; a crash of the
whole machine (power loss) can lose at most the last flush interval's records. fsync per record
would make that nothing too, at a disk flush per request (milliseconds on most disks), which no
gateway can pay on its hot path; the cost of what is done is in docs/deploy.md (measured).

A closed segment is deleted as soon as every record in it is in the database (or the spool, for
an outage). At the next start, segments left by a crash are moved into the spool, whose replay
writes them; inserts ignore ids already present, so a record that reached the database and its
journal line both count once.

Several processes may share one base (gateways on one SQLite file, ``--workers N``): each takes
the first free *slot*, an exclusive ``flock`` on ``<base>.journal-<slot>.lock``, and writes
``<base>.journal-<slot>.<segment>``. A slot whose lock can be taken has no living writer, so a
starting process also adopts the segments of every such slot (a crashed neighbour's records).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec

from sluice.store.rows import RequestRow

log = logging.getLogger("sluice.store")
_encode = msgspec.json.Encoder().encode

#: Processes that can share one journal base at once.
MAX_SLOTS = 64


class JournalLocked(Exception):
    """Another process writes this journal."""


class Journal:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.slot = -1
        self._lock_fd: int | None = None
        self._fd: int | None = None
        #: The segment appends go to; segments below it are closed.
        self.segment = 0
        self._rows_in_segment = 0
        self.failed = False

    def _prefix(self, slot: int) -> str:
        return f"{self.base.name}.journal-{slot}"

    def _path(self, n: int) -> Path:
        return self.base.with_name(f"{self._prefix(self.slot)}.{n:08d}")

    def segments(self, slot: int | None = None) -> list[tuple[int, Path]]:
        """A slot's segment files (by default this process's), oldest first."""
        prefix = self._prefix(self.slot if slot is None else slot)
        pattern = re.compile(re.escape(prefix) + r"\.(\d+)$")
        found = []
        for p in self.base.parent.glob(prefix + ".*"):
            m = pattern.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
        return sorted(found)

    def _try_lock(self, slot: int) -> int | None:
        fd = os.open(self.base.with_name(self._prefix(slot) + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def open(self, adopt: Callable[[Sequence[Path]], int]) -> int:
        """Take a slot; hand ``adopt`` the segments left by crashed processes (this slot's and
        every unlocked one's), which it must store elsewhere and delete. Blocking. Returns how
        many segments were adopted."""
        self.base.parent.mkdir(parents=True, exist_ok=True)
        for slot in range(MAX_SLOTS):
            fd = self._try_lock(slot)
            if fd is not None:
                self.slot, self._lock_fd = slot, fd
                break
        else:
            raise JournalLocked(f"all {MAX_SLOTS} request journal slots of {self.base} are in use")
        mine = self.segments()
        self.segment = (mine[-1][0] + 1) if mine else 0
        adopted = len(mine)
        if mine:
            adopt([p for _, p in mine])
        for slot in range(MAX_SLOTS):
            if slot == self.slot or not self.segments(slot):
                continue
            fd = self._try_lock(slot)
            if fd is None:
                continue  # a living neighbour's journal
            try:
                left = self.segments(slot)
                adopt([p for _, p in left])
                adopted += len(left)
            finally:
                os.close(fd)
        return adopted

    def append(self, row: RequestRow) -> None:
        """One record, one ``write(2)``. On a disk error the journal is turned off (logged once)
        and records carry on through memory as without it."""
        if self.failed:
            return
        try:
            if self._fd is None:
                self._fd = os.open(self._path(self.segment), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.write(self._fd, _encode(row) + b"\n")
            self._rows_in_segment += 1
        except OSError as exc:
            self.failed = True
            log.error("request journal: cannot write (%s); records are kept in memory only", exc)

    def rotate(self) -> int | None:
        """Close the current segment (if it holds records) and start the next; returns the
        closed segment's file descriptor, for the caller to ``sync_and_close`` off the loop."""
        if self._rows_in_segment == 0 or self._fd is None:
            return None
        fd, self._fd = self._fd, None
        self.segment += 1
        self._rows_in_segment = 0
        return fd

    def trim(self, below: int) -> int:
        """Delete closed segments numbered below ``below`` (their records are in the database or
        the spool). Blocking (an unlink each); returns how many were deleted."""
        n = 0
        for number, path in self.segments():
            if number >= min(below, self.segment):
                break
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                n += 1
        return n

    def close(self, *, discard: bool) -> None:
        """Close the files; with ``discard``, delete every segment (everything is stored)."""
        if self._fd is not None:
            sync_and_close(self._fd)
            self._fd = None
        if discard:
            self.segment += 1
            self.trim(self.segment)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def sync_and_close(fd: int) -> None:
    try:
        os.fdatasync(fd)
    except OSError as exc:
        log.error("request journal: fdatasync failed: %s", exc)
    finally:
        os.close(fd)
