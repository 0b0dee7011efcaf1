"""The console's endpoints on PostgreSQL: the real gateway on its own database, traffic through
the SDK, then every page's data and a change made with a console session."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import openai
import pytest

from sluice.testing.fake_openai import FakeOpenAI
from tests.conftest import require_service
from tests.e2e.gateway import ADMIN_KEY, Gateway, make_gateway
from tests.e2e.test_roles import ENG_ADMIN_KEY, ROLES, VIEWER_KEY, roles_config

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


async def _database(action: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        await conn.execute(f'{action} DATABASE "{name}"' + (" WITH (FORCE)" if action == "DROP" else ""))
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def pg_gw(tmp_path_factory: pytest.TempPathFactory, fake_upstream: FakeOpenAI) -> Iterator[Gateway]:
    require_service("postgresql", 5432)
    name = "sluice_console_" + secrets.token_hex(4)
    asyncio.run(_database("CREATE", name))
    workdir: Path = tmp_path_factory.mktemp("console-pg")
    config = (
        roles_config(workdir, fake_upstream.base_url)
        .replace(f"url: sqlite:///{workdir}/sluice.db", f"url: postgresql://postgres@127.0.0.1:5432/{name}")
        .replace(
            "  shutdown_grace_s: 5\n", "  shutdown_grace_s: 5\n  key_secret: env:SLUICE_TEST_KEY_SECRET\n"
        )
    )
    assert "postgresql://" in config and "sqlite:" not in config
    gateway = make_gateway(workdir, config)
    gateway.env.update(SLUICE_TEST_VIEWER_KEY=VIEWER_KEY, SLUICE_TEST_ENG_ADMIN_KEY=ENG_ADMIN_KEY,
                       SLUICE_TEST_KEY_SECRET="pg-console-secret-0123456789")  # fmt: skip
    try:
        gateway.create_key("eng", "--name", "eng-app")
        gateway.create_key("billing", "--name", "bill-app")
        gateway.start()
        for secret in gateway.keys.values():
            client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=secret, max_retries=0)
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                           extra_headers={"x-sluice-tags": "pg"})  # fmt: skip
        yield gateway
    finally:
        gateway.stop()
        asyncio.run(_database("DROP", name))


def _get(gw: Gateway, path: str, role: str = "admin") -> httpx.Response:
    return httpx.get(gw.base_url + path, headers=ROLES[role], timeout=10)


def test_every_page_reads_on_postgres(pg_gw: Gateway) -> None:
    import time

    for _ in range(100):
        if len(_get(pg_gw, "/admin/requests").json()["data"]) >= 2:
            break
        time.sleep(0.05)
    overview = _get(pg_gw, "/admin/overview").json()
    assert overview["totals"]["requests"] == 2 and {r["team"] for r in overview["top"]["team"]} == {
        "eng",
        "billing",
    }
    assert [r["tag"] for r in overview["top"]["tag"]] == ["pg"]
    reliability = _get(pg_gw, "/admin/reliability").json()
    assert sum(x["count"] for x in reliability["latency"]) == 2
    spend = _get(pg_gw, "/admin/spend?group_by=team,model").json()["data"]
    assert sorted(r["group"] for r in spend) == [["billing", "gpt-4o-mini"], ["eng", "gpt-4o-mini"]]
    scoped = _get(pg_gw, "/admin/requests", "eng-lead").json()["data"]
    assert [r["team"] for r in scoped] == ["eng"]
    for path in ("/admin/teams", "/admin/policy", "/admin/audit", "/admin/budgets", "/ui"):
        assert _get(pg_gw, path).status_code == 200, path


def test_a_console_change_is_audited_on_postgres(pg_gw: Gateway) -> None:
    client = httpx.Client(base_url=pg_gw.base_url, timeout=10)
    me = client.post("/ui/api/session", json={"key": ENG_ADMIN_KEY}).json()
    made = client.post(
        "/admin/keys", json={"team": "eng", "name": "pg-made"}, headers={"x-csrf-token": me["csrf"]}
    )
    assert made.status_code == 201, made.text
    r = client.patch(
        f"/admin/keys/{made.json()['id']}", json={"rpm": 9}, headers={"x-csrf-token": me["csrf"]}
    )
    assert r.status_code == 200 and r.json()["rpm"] == 9
    entries = _get(pg_gw, "/admin/audit").json()["data"]
    assert [(e["action"], e["actor"], e["via"]) for e in entries[:2]] == [
        ("key.limits_changed", "eng-lead", "console"), ("key.created", "eng-lead", "console")]  # fmt: skip
    assert ADMIN_KEY not in str(entries)
