"""Which settings a reload cannot apply to a running process."""

from __future__ import annotations

from sluice.config import parse_config
from sluice.reloader import restart_required


def test_restart_required_names_only_start_time_settings() -> None:
    base = parse_config({"server": {"port": 4000}, "store": {"url": "sqlite:///a.db"}})
    same = parse_config(
        {"server": {"port": 4000, "max_body_bytes": 10, "drain_s": 3}, "store": {"url": "sqlite:///a.db"}}
    )
    assert restart_required(base, same) == []  # applied live
    moved = parse_config(
        {"server": {"port": 4001, "workers": 2}, "store": {"url": "sqlite:///b.db", "journal": False},
         "state": {"url": "redis://127.0.0.1:6379/0"}, "logging": {"level": "debug"}}
    )  # fmt: skip
    assert restart_required(base, moved) == [
        "server.port", "server.workers", "store.url", "store.journal", "state.url", "logging.level",
    ]  # fmt: skip
