"""The console in a real browser (Debian's chromium driven by Playwright, never a downloaded
browser): sign in, read the overview, create a key and see it listed, revoke it, filter the
request log, a team_admin sees only its team, and no console error on any page. Set
SLUICE_SCREENSHOTS=DIR to keep a screenshot of each page (docs/console/ holds them)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import pytest

from sluice.testing.fake_openai import FakeOpenAI
from tests.conftest import IN_CI
from tests.e2e.gateway import ADMIN_KEY, Gateway, make_gateway
from tests.e2e.test_roles import ENG_ADMIN_KEY, VIEWER_KEY, roles_config

pytestmark = pytest.mark.e2e
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
PAGES = ["overview", "reliability", "requests", "keys", "teams", "policy", "audit"]


def require_chromium() -> None:
    if Path(CHROMIUM).exists() and shutil.which("chromium"):
        return
    if IN_CI:
        pytest.fail(
            "chromium is not installed (CI=true: missing packages fail; see scripts/apt-packages.txt)"
        )
    pytest.skip("chromium is not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, fake_upstream: FakeOpenAI) -> Iterator[Gateway]:
    workdir = tmp_path_factory.mktemp("console")
    gateway = make_gateway(workdir, roles_config(workdir, fake_upstream.base_url))
    gateway.env.update(SLUICE_TEST_VIEWER_KEY=VIEWER_KEY, SLUICE_TEST_ENG_ADMIN_KEY=ENG_ADMIN_KEY)
    gateway.create_key("eng", "--name", "eng-app", "--user", "ada")
    gateway.create_key("billing", "--name", "bill-app", "--budget-usd", "3")
    gateway.start()
    for i, secret in enumerate(gateway.keys.values()):
        client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=secret, max_retries=0)
        for n in range(3 + i):
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": f"hello {n}"}],
                extra_headers={"x-sluice-tags": "search" if n % 2 else "summaries"}, user=f"user-{n}",
            )  # fmt: skip
        with pytest.raises(openai.APIStatusError):
            client.chat.completions.create(model="fault-500", messages=[{"role": "user", "content": "x"}])
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "stream"}], stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Console:
    def __init__(self, browser: Any, gw: Gateway) -> None:
        self.context = browser.new_context(viewport={"width": 1360, "height": 900})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.gw = gw

    def sign_in(self, key: str) -> None:
        self.page.goto(self.gw.base_url + "/ui")
        self.page.wait_for_selector("body[data-loaded=signin]")
        self.page.fill("#signin-key", key)
        self.page.click("#signin-btn")
        self.page.wait_for_selector("body[data-loaded=overview]")

    def open(self, name: str) -> str:
        self.page.click(f"#nav a[data-page={name}]")
        self.page.wait_for_selector(f"body[data-loaded={name}] #page-{name}")
        assert self.page.inner_text("#page-error") == "", self.page.inner_text("#page-error")
        return str(self.page.inner_text("#content"))

    def shot(self, name: str) -> None:
        where = os.environ.get("SLUICE_SCREENSHOTS")
        if where:
            Path(where).mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(Path(where) / f"{name}.png"), full_page=True)


def _wait_logged(gw: Gateway, n: int) -> None:
    import time

    for _ in range(100):
        r = httpx.get(
            gw.base_url + "/admin/requests?limit=200", headers={"authorization": f"Bearer {ADMIN_KEY}"}
        )
        if len(r.json()["data"]) >= n:
            return
        time.sleep(0.05)


def test_admin_signs_in_reads_every_page_and_manages_keys(browser: Any, gw: Gateway) -> None:
    _wait_logged(gw, 11)
    c = Console(browser, gw)
    c.sign_in(ADMIN_KEY)
    c.page.wait_for_selector("#kpi-requests")
    assert int(c.page.inner_text("#kpi-requests .value").replace(",", "")) >= 11
    assert "billing" in c.page.inner_text("#content") and "eng-app" in c.page.inner_text("#content")
    assert c.page.locator("svg.chart polyline").count() >= 2
    c.shot("overview")
    for name in PAGES[1:]:
        text = c.open(name)
        c.shot(name)
        if name == "reliability":  # billing may not use fault-500 (client); eng's upstream failed (provider)
            assert "client\tpermission" in text and "provider\tserver" in text, text
    c.open("keys")
    c.page.select_option("#new-team", "eng")
    c.page.fill("#new-name", "made-in-browser")
    c.page.click("#new-create")
    c.page.wait_for_selector("#new-secret")
    secret = c.page.inner_text("#new-secret")
    assert secret.startswith("sk-sluice-")
    c.shot("keys-created")
    row = c.page.locator("tr", has_text="made-in-browser")
    assert row.count() == 1 and "active" in row.inner_text()
    c.page.once("dialog", lambda d: d.accept())
    row.locator("button[data-revoke]").click()
    c.page.wait_for_selector("tr:has-text('made-in-browser'):has-text('revoked')")
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=secret, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    audit = c.open("audit")
    c.shot("audit")  # again, now with the console's own changes
    assert "key.revoked" in audit and "key.created" in audit and "console" in audit
    assert c.errors == [], c.errors


def test_request_log_filters(browser: Any, gw: Gateway) -> None:
    _wait_logged(gw, 11)
    c = Console(browser, gw)
    c.sign_in(ADMIN_KEY)
    c.open("requests")
    c.page.fill("#f-team", "eng")
    c.page.fill("#f-status", "5xx")
    c.page.click("#req-apply")
    c.page.wait_for_selector("#req-table:has-text('1 shown')")
    rows = c.page.locator("#req-table tbody tr")
    assert rows.count() == 1 and "eng" in rows.inner_text() and "500" in rows.inner_text()
    rows.first.click()
    c.page.wait_for_selector("#req-detail:has-text('Attempts')")
    detail = c.page.inner_text("#req-detail")
    assert "fault-500" in detail and "server" in detail  # the provider's error kind, attempt by attempt
    c.shot("request-detail")
    assert c.errors == [], c.errors


def test_team_admin_sees_only_its_team(browser: Any, gw: Gateway) -> None:
    _wait_logged(gw, 11)
    c = Console(browser, gw)
    c.sign_in(ENG_ADMIN_KEY)
    for name in PAGES:
        text = c.page.inner_text("#content") if name == "overview" else c.open(name)
        assert "billing" not in text and "bill-app" not in text, (name, text)
    assert "eng-app" in c.open("keys")
    c.shot("team-admin-keys")
    assert c.errors == [], c.errors


def test_a_gateway_key_reads_its_team_only_and_changes_nothing(browser: Any, gw: Gateway) -> None:
    c = Console(browser, gw)
    billing_key = next(s for s in gw.keys.values())  # the first key made: eng
    c.sign_in(billing_key)
    assert "team_viewer" in c.page.inner_text("#who")
    keys = c.open("keys")
    assert "Create a key" not in keys and "bill-app" not in keys
    assert c.errors == [], c.errors


def _session(gw: Gateway, key: str) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=gw.base_url, timeout=10)
    r = client.post("/ui/api/session", json={"key": key})
    assert r.status_code == 200, r.text
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and key not in cookie
    return client, r.json()["csrf"]


def test_csrf_and_roles_of_console_sessions(gw: Gateway) -> None:
    client, csrf = _session(gw, ADMIN_KEY)
    assert client.get("/admin/overview").status_code == 200
    assert client.post("/admin/keys", json={"team": "eng"}).status_code == 403, "no CSRF token, no change"
    assert (
        client.post("/admin/keys", json={"team": "eng"}, headers={"x-csrf-token": "x" * 40}).status_code
        == 403
    )
    evil = {"x-csrf-token": csrf, "origin": "http://evil.example"}
    assert client.post("/admin/keys", json={"team": "eng"}, headers=evil).status_code == 403
    made = client.post("/admin/keys", json={"team": "eng"}, headers={"x-csrf-token": csrf})
    assert made.status_code == 201
    entries = client.get("/admin/audit").json()["data"]
    assert entries[0]["target"] == made.json()["id"] and entries[0]["via"] == "console"
    viewer, vcsrf = _session(gw, VIEWER_KEY)
    r = viewer.post("/admin/keys", json={"team": "eng"}, headers={"x-csrf-token": vcsrf})
    assert r.status_code == 403 and "role viewer" in r.json()["error"]["message"]
    lead, lcsrf = _session(gw, ENG_ADMIN_KEY)
    r = lead.delete(f"/admin/keys/{made.json()['id']}", headers={"x-csrf-token": csrf})
    assert r.status_code == 403, "another session's CSRF token does not work"
    assert lead.delete(f"/admin/keys/{made.json()['id']}", headers={"x-csrf-token": lcsrf}).status_code == 200
    assert client.delete("/ui/api/session", headers={"x-csrf-token": csrf}).status_code == 200
    tampered = httpx.get(gw.base_url + "/admin/overview", headers={"cookie": "sluice_session=e30.abcd"})
    assert tampered.status_code == 401
    assert httpx.post(gw.base_url + "/ui/api/session", json={"key": "wrong"}).status_code == 401


def test_console_files_are_served_with_a_strict_policy(gw: Gateway) -> None:
    page = httpx.get(gw.base_url + "/ui")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="/ui/static/console.js">' in page.text and "http" not in page.text.replace(
        "http-equiv", ""
    )
    assert (
        httpx.get(gw.base_url + "/ui/static/console.js").headers["content-type"].startswith("text/javascript")
    )
    assert httpx.get(gw.base_url + "/ui/static/..%2Fsession.py").status_code == 404
    assert httpx.get(gw.base_url + "/ui/static/nope.js").status_code == 404
