"""Stored responses on PostgreSQL, shared by two replicas: a response created on one is read,
continued and deleted on the other, and stays invisible to another team."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from sluice.testing.fake_openai import FakeOpenAI
from tests.conftest import require_service
from tests.e2e.gateway import Gateway, make_gateway

pytestmark = pytest.mark.e2e
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    require_service("postgresql", 5432)
    name = "sluice_test_respgw_" + secrets.token_hex(4)
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        asyncio.run(_admin(f'DROP DATABASE "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def replicas(
    tmp_path_factory: pytest.TempPathFactory, database: str
) -> Iterator[tuple[Gateway, Gateway, FakeOpenAI]]:
    with FakeOpenAI() as fake:
        gws = []
        for i in range(2):
            workdir: Path = tmp_path_factory.mktemp(f"replica{i}")
            config = f"""
server: {{key_secret: env:SLUICE_TEST_ADMIN_KEY}}
store: {{url: "{database}", flush_interval_s: 0.05, key_refresh_s: 0.2}}
providers:
  up: {{type: openai, base_url: "{fake.base_url}", api_key: env:SLUICE_TEST_UPSTREAM_KEY}}
models:
  gpt-4o-mini: {{targets: [{{provider: up, model: gpt-4o-mini}}]}}
teams: {{eng: {{}}, ops: {{}}}}
"""
            gws.append(make_gateway(workdir, config))
        a, b = gws
        a.create_key("eng")
        a.create_key("ops")
        a.start()
        b.start()
        try:
            yield a, b, fake
        finally:
            a.stop()
            b.stop()


def _client(gw: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0)


def _eventually(fn: object, timeout: float = 5.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()  # type: ignore[operator]
        except openai.NotFoundError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_a_response_made_on_one_replica_is_continued_on_the_other(
    replicas: tuple[Gateway, Gateway, FakeOpenAI],
) -> None:
    a, b, fake = replicas
    eng, ops = list(a.keys.values())
    first = _client(a, eng).responses.create(model="gpt-4o-mini", input="my name is Ada")
    got = _eventually(lambda: _client(b, eng).responses.retrieve(first.id))
    assert got.output_text == "echo: my name is Ada"  # type: ignore[attr-defined]
    second = _client(b, eng).responses.create(
        model="gpt-4o-mini", input="who am I", previous_response_id=first.id
    )
    assert second.output_text == "echo: who am I"
    assert "echo: my name is Ada" in json.dumps(fake.requests[-1]["body"]["messages"])
    with pytest.raises(openai.NotFoundError):
        _client(a, ops).responses.retrieve(first.id)
    _client(a, eng).responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        _client(b, eng).responses.retrieve(first.id)
