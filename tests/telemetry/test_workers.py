from __future__ import annotations

from pathlib import Path

from sluice.telemetry.prom import Registry
from sluice.telemetry.workers import SnapshotPublisher
from tests.telemetry.promtext import parse, value


def _worker(directory: Path, name: str, n: int) -> tuple[Registry, SnapshotPublisher]:
    r = Registry()
    r.counter("w_requests_total", "Requests.").inc((), n)
    pub = SnapshotPublisher(r, directory)
    pub._own = directory / f"worker-{name}.json"  # two "processes" in one test
    return r, pub


async def test_the_answering_worker_adds_every_published_snapshot_to_its_live_counts(tmp_path: Path) -> None:
    a_reg, a = _worker(tmp_path, "a", 3)
    _, b = _worker(tmp_path, "b", 4)
    await b.publish()
    a_reg._counters[0].inc((), 1)  # live, never published
    text = await a.exposition()
    assert value(parse(text), "w_requests_total") == 8 and a.workers_seen == 2
    (tmp_path / "worker-c.json").write_text("{torn")  # a worker mid-write or another version: skipped
    assert value(parse(await a.exposition()), "w_requests_total") == 8


async def test_without_a_shared_directory_only_this_process_counts(tmp_path: Path) -> None:
    r = Registry()
    r.counter("w_requests_total", "Requests.").inc((), 2)
    pub = SnapshotPublisher(r, None)
    await pub.publish()
    assert value(parse(await pub.exposition()), "w_requests_total") == 2 and not pub.shared
    assert list(tmp_path.iterdir()) == []
