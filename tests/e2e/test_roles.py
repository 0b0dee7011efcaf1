"""Roles on every admin endpoint: admin, viewer, team_admin (its teams only), and the cross-team
attempt for each (403 naming what is missing, or 404 where an id would leak)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import openai
import pytest

from sluice.testing.fake_openai import FakeOpenAI
from tests.e2e.gateway import ADMIN_KEY, Gateway, make_gateway, standard_config

pytestmark = pytest.mark.e2e
VIEWER_KEY = "viewer-SECRET-0000111122223333"
ENG_ADMIN_KEY = "eng-admin-SECRET-4444555566667777"
ROLES = {
    "admin": {"authorization": f"Bearer {ADMIN_KEY}"},
    "viewer": {"authorization": f"Bearer {VIEWER_KEY}"},
    "eng-lead": {"authorization": f"Bearer {ENG_ADMIN_KEY}"},
}
ADMIN_KEYS = """  admin_keys:
    - {name: finance, key: env:SLUICE_TEST_VIEWER_KEY, role: viewer}
    - {name: eng-lead, key: env:SLUICE_TEST_ENG_ADMIN_KEY, role: team_admin, teams: [eng]}
"""


def roles_config(workdir: Path, upstream: str) -> str:
    text = standard_config(workdir, upstream)
    text = text.replace(
        "  admin_key: env:SLUICE_TEST_ADMIN_KEY\n", "  admin_key: env:SLUICE_TEST_ADMIN_KEY\n" + ADMIN_KEYS
    )
    return text.replace(
        "  eng: {}\n  billing: {models: [gpt-4o-mini]}",
        "  eng: {budget: {usd: 50, period: monthly}}\n"
        "  billing: {models: [gpt-4o-mini], budget: {usd: 100, period: monthly}}",
    )


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, fake_upstream: FakeOpenAI) -> Iterator[Gateway]:
    workdir = tmp_path_factory.mktemp("roles")
    gateway = make_gateway(workdir, roles_config(workdir, fake_upstream.base_url))
    gateway.env.update(SLUICE_TEST_VIEWER_KEY=VIEWER_KEY, SLUICE_TEST_ENG_ADMIN_KEY=ENG_ADMIN_KEY)
    gateway.create_key("eng", "--name", "eng-app")
    gateway.create_key("billing", "--name", "bill-app")
    gateway.start()
    for secret in gateway.keys.values():
        client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=secret, max_retries=0)
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-sluice-tags": "feature-x"},
        )  # fmt: skip
    yield gateway
    gateway.stop()


def _get(gw: Gateway, path: str, role: str) -> httpx.Response:
    return httpx.get(gw.base_url + path, headers=ROLES[role], timeout=10)


def _ids(gw: Gateway, team: str) -> tuple[str, str]:
    """(a key id, a request id) of ``team``."""
    keys = _get(gw, "/admin/keys", "admin").json()["data"]
    key_id = next(k["id"] for k in keys if k["team"] == team and k["revoked_at"] is None)
    for _ in range(50):
        reqs = _get(gw, f"/admin/requests?team={team}", "admin").json()["data"]
        if reqs:
            return key_id, reqs[0]["id"]
        import time

        time.sleep(0.05)
    raise AssertionError(f"no request of team {team} was logged")


READS = [
    "/admin/keys", "/admin/spend", "/admin/spend?group_by=team,model", "/admin/spend?group_by=app",
    "/admin/spend?group_by=tag,team", "/admin/budgets", "/admin/health", "/admin/audit", "/admin/overview",
    "/admin/reliability", "/admin/requests", "/admin/teams", "/admin/policy",
]  # fmt: skip
#: Reads that take ?team= (a cross-team attempt is a 403 naming the team).
TEAM_FILTERED = [
    "/admin/keys", "/admin/spend", "/admin/budgets", "/admin/audit", "/admin/overview", "/admin/reliability",
    "/admin/requests", "/admin/teams",
]  # fmt: skip


@pytest.mark.parametrize("path", READS)
def test_every_role_reads_and_a_team_admin_sees_only_its_team(gw: Gateway, path: str) -> None:
    _ids(gw, "billing")  # the log has both teams' requests
    for role in ("admin", "viewer"):
        assert _get(gw, path, role).status_code == 200, (role, path)
    scoped = _get(gw, path, "eng-lead")
    assert scoped.status_code == 200, scoped.text
    assert "billing" not in scoped.text and "bill-app" not in scoped.text, scoped.text
    assert httpx.get(gw.base_url + path, timeout=10).status_code == 401
    gateway_key = {"authorization": f"Bearer {next(iter(gw.keys.values()))}"}
    assert httpx.get(gw.base_url + path, headers=gateway_key, timeout=10).status_code == 401


@pytest.mark.parametrize("path", TEAM_FILTERED)
def test_cross_team_filter_is_refused_naming_the_team(gw: Gateway, path: str) -> None:
    r = _get(gw, f"{path}?team=billing", "eng-lead")
    assert r.status_code == 403
    assert "team 'billing'" in r.json()["error"]["message"]
    assert _get(gw, f"{path}?team=eng", "eng-lead").status_code == 200
    assert _get(gw, f"{path}?team=billing", "viewer").status_code == 200


def test_an_admin_sees_both_teams(gw: Gateway) -> None:
    _ids(gw, "billing")
    text = _get(gw, "/admin/spend?group_by=team", "admin").text
    assert "billing" in text and "eng" in text


def test_request_of_another_team_is_a_404(gw: Gateway) -> None:
    _, eng_request = _ids(gw, "eng")
    _, billing_request = _ids(gw, "billing")
    assert _get(gw, f"/admin/requests/{eng_request}", "eng-lead").status_code == 200
    assert _get(gw, f"/admin/requests/{billing_request}", "eng-lead").status_code == 404
    assert _get(gw, f"/admin/requests/{billing_request}", "viewer").status_code == 200


def test_create_key_by_role(gw: Gateway) -> None:
    url = gw.base_url + "/admin/keys"
    viewer = httpx.post(url, headers=ROLES["viewer"], json={"team": "eng"})
    assert viewer.status_code == 403 and "role viewer" in viewer.json()["error"]["message"]
    cross = httpx.post(url, headers=ROLES["eng-lead"], json={"team": "billing"})
    assert cross.status_code == 403 and "team 'billing'" in cross.json()["error"]["message"]
    own = httpx.post(url, headers=ROLES["eng-lead"], json={"team": "eng", "name": "lead-made"})
    assert own.status_code == 201, own.text
    assert httpx.post(url, headers=ROLES["admin"], json={"team": "billing"}).status_code == 201


@pytest.mark.parametrize("method", ["DELETE", "PATCH"])
def test_change_or_revoke_a_key_by_role(gw: Gateway, method: str) -> None:
    made = {t: httpx.post(gw.base_url + "/admin/keys", headers=ROLES["admin"], json={"team": t}).json()["id"]
            for t in ("eng", "billing")}  # fmt: skip
    body = {"json": {"rpm": 7}} if method == "PATCH" else {}

    def call(role: str, key_id: str) -> httpx.Response:
        return httpx.request(method, gw.base_url + f"/admin/keys/{key_id}", headers=ROLES[role], **body)  # type: ignore[arg-type]

    assert call("viewer", made["eng"]).status_code == 403
    cross = call("eng-lead", made["billing"])
    assert cross.status_code == 404 and made["billing"] in cross.json()["error"]["message"]
    assert call("eng-lead", made["eng"]).status_code == 200
    assert call("admin", made["billing"]).status_code == 200
    if method == "PATCH":
        keys = {k["id"]: k for k in _get(gw, "/admin/keys", "admin").json()["data"]}
        assert keys[made["eng"]]["rpm"] == 7 and keys[made["billing"]]["rpm"] == 7


def test_audit_names_who_and_is_scoped(gw: Gateway) -> None:
    key_id = httpx.post(gw.base_url + "/admin/keys", headers=ROLES["eng-lead"], json={"team": "eng"}).json()[
        "id"
    ]
    r = httpx.patch(gw.base_url + f"/admin/keys/{key_id}", headers=ROLES["eng-lead"], json={"budget_usd": 5})
    assert r.status_code == 200 and r.json()["budget_period"] == "monthly"
    entries = _get(gw, "/admin/audit", "eng-lead").json()["data"]
    mine = [e for e in entries if e["target"] == key_id]
    assert [e["action"] for e in mine] == ["key.limits_changed", "key.created"]
    assert mine[0]["actor"] == "eng-lead" and mine[0]["via"] == "api"
    assert mine[0]["before"]["budget_usd"] is None and mine[0]["after"]["budget_usd"] == 5
    assert all(e["team"] == "eng" for e in entries)
    trail = _get(gw, "/admin/audit", "admin").text
    assert not [s for s in gw.keys.values() if s in trail], "secrets never reach the audit trail"
    cli = [e for e in _get(gw, "/admin/audit", "admin").json()["data"] if e["via"] == "cli"]
    assert {e["team"] for e in cli} == {"eng", "billing"} and all(e["actor"].startswith("cli:") for e in cli)


def test_policy_view_shows_no_secret(gw: Gateway) -> None:
    view = _get(gw, "/admin/policy", "viewer").json()
    assert view["version"] and view["loaded_at"]
    assert ADMIN_KEY not in str(view) and VIEWER_KEY not in str(view)
    assert view["policy"]["server"]["admin_key"] == "env:SLUICE_TEST_ADMIN_KEY"
