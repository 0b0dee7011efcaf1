"""A crash loses nothing: the real gateway is killed (SIGKILL) in the middle of a load from the
official SDK while every record is still in memory (a 30 s flush interval); after a restart,
every request the client saw succeed has exactly one record."""

from __future__ import annotations

import secrets
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai

from sluice.testing.fake_openai import FakeOpenAI
from tests.conftest import require_service
from tests.e2e.gateway import Gateway, make_gateway

MSG = [{"role": "user", "content": "hello"}]


def _config(store_url: str, upstream: str) -> str:
    return f"""
store: {{url: "{store_url}", flush_interval_s: 30, journal: true}}
server: {{key_secret: env:SLUICE_TEST_ADMIN_KEY}}
providers:
  up: {{type: openai, base_url: "{upstream}", api_key: env:SLUICE_TEST_UPSTREAM_KEY}}
models:
  gpt-4o-mini: {{targets: [{{provider: up, model: gpt-4o-mini}}]}}
teams: {{eng: {{}}}}
"""


def _load(gw: Gateway, key: str, stop: threading.Event, ok: list[str], lock: threading.Lock, i: int) -> None:
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0, timeout=10)
    n = 0
    while not stop.is_set():
        n += 1
        try:
            if (i + n) % 2:
                raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSG)
                raw.parse()
            else:
                raw = client.chat.completions.with_raw_response.create(
                    model="gpt-4o-mini", messages=MSG, stream=True
                )
                for _ in raw.parse():
                    pass
        except (openai.APIError, OSError):
            continue  # in flight when the process died: may or may not have a record
        with lock:
            ok.append(raw.headers["x-request-id"])


def _crash_and_check(gw: Gateway, ids: Callable[[], list[str]]) -> None:
    key = gw.create_key("eng")
    gw.start()
    ok: list[str] = []
    lock, stop = threading.Lock(), threading.Event()
    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(_load, gw, key, stop, ok, lock, i) for i in range(6)]
        deadline = time.monotonic() + 30
        while len(ok) < 150 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGKILL)
        gw.proc.wait(10)
        gw.proc = None
        time.sleep(0.2)
        stop.set()
        for f in futures:
            f.result()
    seen = list(ok)
    assert len(seen) >= 150
    assert len(ids()) < len(seen)  # most records were only in memory (and the journal) at the kill
    gw.start()
    try:
        deadline = time.monotonic() + 20
        while not set(seen) <= set(ids()) and time.monotonic() < deadline:
            time.sleep(0.1)
        stored = ids()
        missing = set(seen) - set(stored)
        assert not missing, f"{len(missing)} answered requests have no record"
        assert len(stored) == len(set(stored))  # exactly one each
    finally:
        gw.stop()


def test_kill_9_loses_no_record_sqlite(tmp_path: Path, fake_upstream: FakeOpenAI) -> None:
    db = tmp_path / "sluice.db"

    def ids() -> list[str]:
        if not db.exists():
            return []
        with sqlite3.connect(db) as conn:
            return [r[0] for r in conn.execute("SELECT id FROM requests")]

    _crash_and_check(make_gateway(tmp_path, _config(f"sqlite:///{db}", fake_upstream.base_url)), ids)


def test_kill_9_loses_no_record_postgres(tmp_path: Path, fake_upstream: FakeOpenAI) -> None:
    require_service("postgresql", 5432)
    import asyncio

    import asyncpg

    name = "sluice_crash_" + secrets.token_hex(4)
    admin_url = "postgresql://postgres@127.0.0.1:5432/postgres"
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def fetch_ids() -> list[str]:
        conn = await asyncpg.connect(url)
        try:
            if not await conn.fetchval("SELECT to_regclass('requests') IS NOT NULL"):
                return []
            return [r[0] for r in await conn.fetch("SELECT id FROM requests")]
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        gw = make_gateway(tmp_path, _config(url, fake_upstream.base_url))
        _crash_and_check(gw, lambda: asyncio.run(fetch_ids()))
    finally:
        asyncio.run(admin(f'DROP DATABASE "{name}" WITH (FORCE)'))
