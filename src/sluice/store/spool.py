"""The request log's spool file: JSON lines of rows the database could not take in time.

Blocking file work, so the writer runs it off the event loop (in a thread), except at shutdown.
Rows are appended to ``<spool>``; a replay first renames it to ``<spool>.replay`` (atomic), so rows
spilled meanwhile start a new file and no row is read twice or skipped. A ``.replay`` file left
by a replay that was cut short is replayed first (inserts ignore ids already present).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Generator, Sequence
from pathlib import Path

from sluice.store.rows import RequestRow

log = logging.getLogger("sluice.store")
_lock = threading.Lock()  # appends from a spill thread and from shutdown never interleave


def append(path: Path, rows: Sequence[RequestRow]) -> None:
    if not rows:
        return
    text = "".join(json.dumps(list(r)) + "\n" for r in rows)
    with _lock:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write(text)


def replay_path(path: Path) -> Path:
    return path.with_name(path.name + ".replay")


def claim(path: Path) -> Path | None:
    """The file to replay now: an unfinished replay, else the spool renamed; None when empty."""
    taken = replay_path(path)
    if taken.exists():
        return taken
    with _lock:
        try:
            path.rename(taken)
        except FileNotFoundError:
            return None
    return taken


def read_batches(path: Path, size: int) -> Generator[list[RequestRow], None, None]:
    """The file's rows, ``size`` at a time. A line that is not a row (the last line of a file
    whose writer was killed mid-append) is skipped and logged, not allowed to stop the replay."""
    bad = 0
    with path.open(encoding="utf-8", errors="replace") as f:
        batch: list[RequestRow] = []
        for line in f:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                bad += 1
                continue
            if not isinstance(row, list):
                bad += 1
                continue
            batch.append(tuple(row))
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch
    if bad:
        log.error("request log: %d unreadable line(s) skipped in %s", bad, path)


def adopt(path: Path, files: Sequence[Path]) -> int:
    """Move files of rows (a crashed run's journal segments) into the spool, to be replayed;
    returns their size in bytes. A torn last line is ended, so it cannot merge with the next row
    (the replay skips it). A crash midway leaves rows in both places: inserts ignore repeats."""
    total = 0
    with _lock:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for f in files:
                data = f.read_bytes()
                if data and not data.endswith(b"\n"):
                    data += b"\n"
                total += len(data)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
    for f in files:
        f.unlink(missing_ok=True)
    return total
