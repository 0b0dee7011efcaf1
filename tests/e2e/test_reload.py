"""Hot reload of the real gateway process: SIGHUP, POST /admin/reload, ``sluice reload`` and
``server.watch_policy``; a broken policy changes nothing but the error report; in-flight
requests finish on their policy; limit counters carry over; records carry the policy version."""

from __future__ import annotations

import hashlib
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import pytest

from sluice.testing.fake_openai import FakeOpenAI
from tests.conftest import require_service
from tests.e2e.gateway import ADMIN_KEY, Gateway, make_gateway

pytestmark = pytest.mark.e2e
MSG = [{"role": "user", "content": "hi"}]


def policy(upstream: str, db: Path, *, models: str = "", extra: str = "", rpm: int = 1000) -> str:
    return f"""
server:
  admin_key: env:SLUICE_TEST_ADMIN_KEY
{extra}
store: {{url: "sqlite:///{db}", flush_interval_s: 0.05}}
providers:
  up: {{type: openai, base_url: "{upstream}", api_key: env:SLUICE_TEST_UPSTREAM_KEY, timeout_s: 10}}
models:
  gpt-4o-mini: {{targets: [{{provider: up, model: gpt-4o-mini}}]}}
  slow: {{targets: [{{provider: up, model: fault-slow}}]}}
{models}
teams:
  eng: {{rate_limit: {{rpm: {rpm}}}}}
"""


def version_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def admin(gw: Gateway, method: str, path: str) -> httpx.Response:
    return httpx.request(
        method, gw.base_url + path, headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=10
    )


def until(cond: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def versions_by_model(db: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    with sqlite3.connect(db) as conn:
        for model, version in conn.execute("SELECT requested_model, policy_version FROM requests"):
            out.setdefault(model, set()).add(version)
    return out


@pytest.fixture
def gw(tmp_path: Path, fake_upstream: FakeOpenAI) -> Any:
    gateway = make_gateway(tmp_path, policy(fake_upstream.base_url, tmp_path / "sluice.db"))
    gateway.create_key("eng")
    gateway.start()
    yield gateway
    gateway.stop()


def client(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url + "/v1", api_key=next(iter(gw.keys.values())), max_retries=0)


def test_sighup_applies_a_new_model_and_in_flight_requests_finish_on_theirs(
    gw: Gateway, fake_upstream: FakeOpenAI, tmp_path: Path
) -> None:
    c = client(gw)
    v1 = version_of(gw.config_path)
    assert admin(gw, "GET", "/admin/policy").json()["version"] == v1
    with pytest.raises(openai.NotFoundError):
        c.chat.completions.create(model="fresh", messages=MSG)
    slow: list[str] = []
    t = threading.Thread(target=lambda: slow.append(c.chat.completions.create(model="slow", messages=MSG).id))
    t.start()  # in flight across the reload (its upstream answers after 2 s)
    time.sleep(0.3)
    # The new policy drops `slow` and adds `fresh`.
    gw.config_path.write_text(
        policy(fake_upstream.base_url, tmp_path / "sluice.db",
               models="  fresh: {targets: [{provider: up, model: gpt-4o-mini}]}").replace(
            "  slow: {targets: [{provider: up, model: fault-slow}]}\n", "")
    )  # fmt: skip
    v2 = version_of(gw.config_path)
    assert gw.proc is not None
    gw.proc.send_signal(signal.SIGHUP)
    until(lambda: admin(gw, "GET", "/admin/policy").json()["version"] == v2)
    assert c.chat.completions.create(model="fresh", messages=MSG).choices[0].message.content
    with pytest.raises(openai.NotFoundError):
        c.chat.completions.create(model="slow", messages=MSG)
    t.join(10)
    assert slow, "the request in flight across the reload failed"
    view = admin(gw, "GET", "/admin/policy").json()
    assert view["reloads"] == 1 and view["last_error"] is None and view["restart_required"] == []
    # Each model was refused under one policy and served under the other; the slow request that
    # started before the reload is recorded under the old one.
    until(lambda: versions_by_model(tmp_path / "sluice.db") == {"fresh": {v1, v2}, "slow": {v1, v2}})
    with sqlite3.connect(tmp_path / "sluice.db") as conn:
        (version,) = conn.execute(
            "SELECT policy_version FROM requests WHERE status = 200 AND requested_model = 'slow'"
        ).fetchone()
    assert version == v1


def test_a_broken_policy_changes_nothing_but_the_report(gw: Gateway, tmp_path: Path) -> None:
    c = client(gw)
    v1 = version_of(gw.config_path)
    good = gw.config_path.read_text()
    broken = {
        "unknown key": good.replace("store:", "stor:"),
        "bad yaml": good + "\n  - [unclosed",
        "missing secret": good.replace("env:SLUICE_TEST_UPSTREAM_KEY", "env:SLUICE_NOT_SET_ANYWHERE"),
        "unknown provider": good.replace("provider: up, model: fault-slow", "provider: nope, model: x"),
    }
    for i, (why, text) in enumerate(broken.items(), start=1):
        gw.config_path.write_text(text)
        r = admin(gw, "POST", "/admin/reload")
        assert r.status_code == 422, why
        body = r.json()
        assert body["version"] == v1 and body["failures"] == i, why
        assert body["error"]["message"]
        ready = httpx.get(gw.base_url + "/readyz", timeout=5)
        assert ready.status_code == 200  # the old policy is serving: still ready
        assert ready.json()["policy"]["version"] == v1
        assert ready.json()["policy"]["last_error"]["message"] == body["error"]["message"]
        assert c.chat.completions.create(model="gpt-4o-mini", messages=MSG).choices
    assert "SLUICE_NOT_SET_ANYWHERE" in str(broken)  # names the variable, never a value
    cli = gw.cli("reload", "--config", str(tmp_path / "good.yaml"), "--url", gw.base_url, check=False)
    assert cli.returncode != 0
    (tmp_path / "good.yaml").write_text(good)
    cli = gw.cli("reload", "--config", str(tmp_path / "good.yaml"), "--url", gw.base_url, check=False)
    assert cli.returncode != 0 and "refused (422)" in cli.stderr  # the gateway's own file is still broken
    gw.config_path.write_text(good + "\n# a comment: a new version\n")
    cli = gw.cli("reload", "--config", str(gw.config_path), "--url", gw.base_url)
    assert f"policy version {version_of(gw.config_path)}" in cli.stdout
    assert admin(gw, "GET", "/admin/policy").json()["last_error"] is None


def test_counters_carry_over_and_restart_only_settings_are_reported(
    tmp_path: Path, fake_upstream: FakeOpenAI
) -> None:
    db = tmp_path / "sluice.db"
    gw = make_gateway(tmp_path, policy(fake_upstream.base_url, db, rpm=3))
    gw.create_key("eng")
    gw.start()
    try:
        c = client(gw)
        for _ in range(3):
            c.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        text = policy(fake_upstream.base_url, db, rpm=3, extra="  port: 1\n  max_body_bytes: 400")
        gw.config_path.write_text(text.replace(f'sqlite:///{db}"', f'sqlite:///{db}", journal: false'))
        body = admin(gw, "POST", "/admin/reload").json()
        assert body["changed"] is True
        assert body["restart_required"] == ["server.port", "store.journal"]
        with pytest.raises(openai.RateLimitError):  # the team's 3 requests this minute still count
            c.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        assert admin(gw, "GET", "/readyz").json()["policy"]["restart_required"] == [
            "server.port",
            "store.journal",
        ]
        with pytest.raises(openai.APIStatusError) as too_big:  # the listener follows the new body cap
            c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x" * 500}])
        assert too_big.value.status_code == 413
    finally:
        gw.stop()


def test_watch_policy_reloads_when_the_file_changes(tmp_path: Path, fake_upstream: FakeOpenAI) -> None:
    db = tmp_path / "sluice.db"
    gw = make_gateway(tmp_path, policy(fake_upstream.base_url, db, extra="  watch_policy: true"))
    gw.create_key("eng")
    gw.start()
    try:
        new = policy(fake_upstream.base_url, db, extra="  watch_policy: true",
                     models="  watched: {targets: [{provider: up, model: gpt-4o-mini}]}")  # fmt: skip
        tmp = tmp_path / "next.yaml"
        tmp.write_text(new)
        tmp.replace(gw.config_path)  # an atomic swap, as a ConfigMap update or a deploy does
        until(lambda: admin(gw, "GET", "/admin/policy").json()["version"] == version_of(gw.config_path))
        assert client(gw).chat.completions.create(model="watched", messages=MSG).choices
    finally:
        gw.stop()


def test_drain_fails_readyz_then_keeps_serving_for_drain_s(tmp_path: Path, fake_upstream: FakeOpenAI) -> None:
    gw = make_gateway(
        tmp_path, policy(fake_upstream.base_url, tmp_path / "sluice.db", extra="  drain_s: 1.5")
    )
    gw.create_key("eng")
    gw.start()
    assert gw.proc is not None
    proc = gw.proc
    c = client(gw)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    until(lambda: httpx.get(gw.base_url + "/readyz", timeout=2).status_code == 503, timeout=3)
    assert c.chat.completions.create(model="gpt-4o-mini", messages=MSG).choices  # still served
    assert proc.wait(10) == 0
    assert time.monotonic() - started >= 1.4
    gw.proc = None


def test_admin_reload_reaches_every_worker(tmp_path: Path, fake_upstream: FakeOpenAI) -> None:
    require_service("redis", 6379)
    db = tmp_path / "sluice.db"
    state = '\nstate: {url: "redis://127.0.0.1:6379/9"}\n'
    gw = make_gateway(tmp_path, policy(fake_upstream.base_url, db) + state)
    gw.create_key("eng")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sluice.cli", "serve", "--config", str(gw.config_path), "--port", str(gw.port),
         "--workers", "2"],
        env=gw.env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        until(lambda: _answers(gw))
        gw.config_path.write_text(
            policy(fake_upstream.base_url, db, models="  w: {targets: [{provider: up, model: gpt-4o-mini}]}")
            + state
        )
        assert admin(gw, "POST", "/admin/reload").status_code == 200  # one worker answers
        v2 = version_of(gw.config_path)
        # every worker (a new connection lands on either) ends up on the new version
        until(lambda: all(admin(gw, "GET", "/admin/policy").json()["version"] == v2 for _ in range(20)))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


def _answers(gw: Gateway) -> bool:
    try:
        return httpx.get(gw.base_url + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
