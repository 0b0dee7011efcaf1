"""High availability, with real processes: three ``sluice serve`` replicas on PostgreSQL and Redis
behind nginx (Debian's package), under a bounded load from the official SDK (plain and streamed):

- a rolling restart (SIGTERM each replica in turn, start it again): no failed request;
- a policy change applied by SIGHUP to all three: no failed request, the new model served by
  every replica, the policy version in the records switches;
- a broken policy applied by SIGHUP: nothing changes but the error report;
- ``kill -9`` of one replica: the only failed requests are those in flight on it; after its
  restart every request the clients saw succeed has exactly one record, and the ledger's count
  equals the fake upstream's own, less at most those in flight on the dead replica.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import pytest

from sluice.testing.fake_openai import FakeOpenAI
from tests.conftest import IN_CI, require_service
from tests.e2e.gateway import ADMIN_KEY, Gateway, free_port, make_gateway

pytestmark = pytest.mark.e2e
MSG = [{"role": "user", "content": "hello"}]
CLIENTS = 6


class CountingUpstream(FakeOpenAI):
    """The fake OpenAI upstream, counting every chat completion it answers (its own ledger)."""

    def __init__(self) -> None:
        super().__init__()
        self.chats = 0

    def _record(self, request: Any, body: Any) -> None:
        if request.path.endswith("/chat/completions"):
            self.chats += 1
        super()._record(request, body)


def _nginx() -> str:
    binary = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
    if binary is None:
        if IN_CI:
            pytest.fail("nginx is not installed (CI=true: missing packages fail)")
        pytest.skip("nginx is not installed (scripts/apt-packages.txt)")
    return binary


def _nginx_conf(tmp: Path, port: int, backends: list[int]) -> str:
    servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=1s;" for p in backends)
    return f"""
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream sluice {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://sluice;
            proxy_buffering off;                 # streams relayed as they come
            proxy_next_upstream error timeout;   # a refused connection goes to the next replica
            proxy_connect_timeout 1s;
            proxy_read_timeout 30s;
        }}
    }}
}}
"""


def _policy(upstream: str, db_url: str, redis_url: str, extra_models: str = "") -> str:
    return f"""
server:
  admin_key: env:SLUICE_TEST_ADMIN_KEY
  key_secret: env:SLUICE_TEST_ADMIN_KEY
  drain_s: 0.5
  shutdown_grace_s: 10
store: {{url: "{db_url}", flush_interval_s: 0.1, key_refresh_s: 0.5}}
state: {{url: "{redis_url}"}}
providers:
  up: {{type: openai, base_url: "{upstream}", api_key: env:SLUICE_TEST_UPSTREAM_KEY}}
models:
  gpt-4o-mini: {{targets: [{{provider: up, model: gpt-4o-mini}}]}}
{extra_models}
teams: {{eng: {{}}}}
"""


@dataclass
class Load:
    """Clients sending requests through the load balancer until stopped, one at a time each."""

    base_url: str
    key: str
    model: str = "gpt-4o-mini"
    ok: list[tuple[float, str]] = field(default_factory=list)
    failed: list[tuple[float, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, i: int) -> None:
        client = openai.OpenAI(base_url=self.base_url + "/v1", api_key=self.key, max_retries=0, timeout=20)
        n = 0
        while not self.stop.is_set():
            n += 1
            model = self.model
            try:
                if (i + n) % 2:
                    raw = client.chat.completions.with_raw_response.create(model=model, messages=MSG)
                    assert raw.parse().choices[0].message.content
                else:
                    raw = client.chat.completions.with_raw_response.create(
                        model=model, messages=MSG, stream=True
                    )
                    chunks = list(raw.parse())
                    assert chunks and chunks[-1].choices[0].finish_reason
            except Exception as exc:
                with self.lock:
                    self.failed.append((time.monotonic(), f"{type(exc).__name__}: {exc}"))
                continue
            with self.lock:
                self.ok.append((time.monotonic(), raw.headers["x-request-id"]))

    def failures_since(self, t: float) -> list[str]:
        with self.lock:
            return [why for at, why in self.failed if at >= t]

    def successes(self) -> int:
        with self.lock:
            return len(self.ok)


def _version(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _policy_view(gw: Gateway) -> dict[str, Any]:
    r = httpx.get(gw.base_url + "/admin/policy", headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=5)
    return dict(r.json())


def _wait(cond: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def _steady(load: Load, seconds: float) -> None:
    before = load.successes()
    time.sleep(seconds)
    assert load.successes() > before, "the load stalled"


@pytest.fixture
def pg_url() -> Iterator[str]:
    require_service("postgresql", 5432)
    import asyncpg

    name = "sluice_ha_" + secrets.token_hex(4)

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE "{name}" WITH (FORCE)'))


async def _records(url: str) -> dict[str, Any]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT id, status, requested_model, policy_version FROM requests")
        return {"rows": [tuple(r) for r in rows]}
    finally:
        await conn.close()


def test_three_replicas_behind_nginx(tmp_path: Path, pg_url: str) -> None:
    nginx = _nginx()
    require_service("redis", 6379)
    upstream = CountingUpstream()
    upstream.__enter__()
    policy_path = tmp_path / "sluice.yaml"
    redis_url = "redis://127.0.0.1:6379/13"
    policy_path.write_text(_policy(upstream.base_url, pg_url, redis_url))
    replicas = []
    for i in range(3):
        gw = make_gateway(tmp_path / f"replica{i}", "")
        gw.config_path = policy_path  # one policy file, as a ConfigMap gives every pod
        replicas.append(gw)
    key = replicas[0].create_key("eng")
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda g: g.start(), replicas))
    lb_port = free_port()
    (tmp_path / "nginx.conf").write_text(_nginx_conf(tmp_path, lb_port, [g.port for g in replicas]))
    lb = subprocess.Popen([nginx, "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
                          stderr=subprocess.DEVNULL)  # fmt: skip
    load = Load(f"http://127.0.0.1:{lb_port}", key)
    pool = ThreadPoolExecutor(CLIENTS)
    try:
        _wait(lambda: httpx.get(load.base_url + "/healthz", timeout=1).status_code == 200)
        futures = [pool.submit(load.run, i) for i in range(CLIENTS)]
        _steady(load, 1.0)

        # 1. A rolling restart: SIGTERM each replica in turn, start it again. No request fails.
        t0 = time.monotonic()
        for gw in replicas:
            assert gw.stop() == 0
            gw.start()
            _steady(load, 0.5)
        assert load.failures_since(t0) == []

        # 2. A new policy by SIGHUP to all three mid-load: a new model, served by every replica.
        t1 = time.monotonic()
        v1 = _version(policy_path)
        policy_path.write_text(_policy(upstream.base_url, pg_url, redis_url,
                                       "  next-model: {targets: [{provider: up, model: gpt-4o-mini}]}"))  # fmt: skip
        v2 = _version(policy_path)
        for gw in replicas:
            assert gw.proc is not None
            gw.proc.send_signal(signal.SIGHUP)
        for gw in replicas:
            _wait(lambda gw=gw: _policy_view(gw)["version"] == v2)
        load.model = "next-model"
        _steady(load, 1.0)
        for gw in replicas:  # each replica itself serves it
            c = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0)
            assert c.chat.completions.create(model="next-model", messages=MSG).choices

        # 3. A broken policy by SIGHUP: nothing changes but the error report.
        good = policy_path.read_text()
        policy_path.write_text(good.replace("teams:", "teams_typo:"))
        for gw in replicas:
            assert gw.proc is not None
            gw.proc.send_signal(signal.SIGHUP)
        for gw in replicas:
            _wait(lambda gw=gw: _policy_view(gw)["failures"] == 1)
            view = _policy_view(gw)
            assert view["version"] == v2 and "teams_typo" in view["last_error"]["message"]
        _steady(load, 1.0)
        assert load.failures_since(t1) == []
        policy_path.write_text(good)

        # 4. kill -9 of one replica: only what was in flight on it fails; then it comes back.
        t2 = time.monotonic()
        victim = replicas[1]
        assert victim.proc is not None
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(10)
        victim.proc = None
        _steady(load, 1.0)
        victim.start()
        _steady(load, 1.0)
        load.stop.set()
        for f in futures:
            f.result(timeout=30)
        killed = load.failures_since(t2)
        assert len(killed) <= CLIENTS, killed  # at most one request in flight per client
    finally:
        load.stop.set()
        pool.shutdown(wait=True)
        lb.send_signal(signal.SIGQUIT)
        lb.wait(10)
        for gw in replicas:
            gw.stop()
        upstream.__exit__(None, None, None)

    ok_ids = [rid for _, rid in load.ok]
    print(f"HA suite: {len(ok_ids)} requests answered, {len(killed)} failed at the kill -9, "
          f"upstream saw {upstream.chats}")  # fmt: skip
    assert len(ok_ids) >= 500, "the load was too small to show anything"
    rows = asyncio.run(_records(pg_url))["rows"]
    ids = [r[0] for r in rows]
    assert len(ids) == len(set(ids))
    missing = set(ok_ids) - set(ids)
    assert not missing, f"{len(missing)} answered requests have no record"
    # The ledger equals the upstream's own count, less at most the calls in flight on the dead replica.
    served = [r for r in rows if r[1] == 200]
    assert upstream.chats - len(killed) <= len(served) <= upstream.chats
    versions = {r[3] for r in rows if r[2] == "next-model"}
    assert versions == {v2}
    assert v1 in {r[3] for r in rows if r[2] == "gpt-4o-mini"}
