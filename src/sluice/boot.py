"""What the gateway's start-up needs besides the policy: where the request log's spool and journal
live, the record writer started over them, the policy file's version, and the built-in demo
upstream (imported only when a policy asks for it). ``app`` wires these; nothing here is per policy."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Protocol

from sluice.config.loader import policy_version
from sluice.config.model import Config
from sluice.errors import ServiceUnavailable
from sluice.store.base import Store
from sluice.store.journal import Journal, JournalLocked
from sluice.store.sqlite import sqlite_path
from sluice.store.writer import RecordWriter

log = logging.getLogger("sluice")

#: ``base_url: builtin:demo`` points a provider at the in-process demo upstream.
DEMO_BASE_URL = "builtin:demo"


class DemoUpstream(Protocol):
    @property
    def base_url(self) -> str: ...

    async def stop(self) -> None: ...


def log_base(config: Config) -> Path:
    """Where the spool and the journal live: beside a SQLite database, else in the working
    directory (processes sharing it each take a journal slot of their own)."""
    if config.store.url.startswith("sqlite:") and sqlite_path(config.store.url) != ":memory:":
        return Path(sqlite_path(config.store.url))
    return Path("sluice-records")


def spool_path(config: Config) -> Path:
    base = log_base(config)
    return base.with_name(base.name + ".spool.jsonl")


def journal_for(config: Config) -> Journal | None:
    url = config.store.url
    if not config.store.journal or (url.startswith("sqlite:") and sqlite_path(url) == ":memory:"):
        return None  # an in-memory database dies with the process anyway
    return Journal(log_base(config))


async def start_writer(config: Config, store: Store) -> RecordWriter:
    writer = RecordWriter(
        store, spool_path(config), flush_interval_s=config.store.flush_interval_s,
        batch_size=config.store.batch_size, queue_size=config.store.queue_size, journal=journal_for(config),
    )  # fmt: skip
    try:
        await writer.start()  # replays what a crash left in the journal
    except JournalLocked as exc:
        await store.close()
        raise ServiceUnavailable(f"cannot start: {exc}") from None
    return writer


async def file_version(path: Path | None) -> str:
    if path is None:
        return "inline"  # started in-process, without a policy file (tests)
    return policy_version(await asyncio.get_running_loop().run_in_executor(None, path.read_bytes))


def policy_counts_tokens(config: Config) -> bool:
    limits = [t.rate_limit for t in config.teams.values()] + list(config.limits.providers.values())
    limits.extend(r.rate_limit for r in config.routes)
    budgets = [t.budget for t in config.teams.values()]
    users = config.limits.users
    if users is not None:
        limits.append(users.rate_limit)
        budgets.append(users.budget)
    return any(r is not None and r.tpm is not None for r in limits) or any(b is not None for b in budgets)


async def start_demo() -> DemoUpstream:
    """The built-in demo upstream, imported only when a policy asks for it (``builtin:demo``)."""
    try:
        from sluice.testing.fake_openai import FakeOpenAI
    except ImportError as exc:  # aiohttp is not a dependency of the gateway itself
        raise ServiceUnavailable(
            f"cannot start the built-in demo upstream ({exc.name} is not installed): "
            "pip install 'sluice-gateway[demo]', or point the provider at a real base_url"
        ) from None
    demo = await FakeOpenAI(label="[sluice demo upstream] ", keep_requests=False).start()
    log.warning("serving the built-in DEMO upstream at %s (echoes prompts; not a real model)", demo.base_url)
    return demo
