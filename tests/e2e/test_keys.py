"""Gateway keys over the admin API and the CLI: create, list, revoke — and the admin key itself."""

from __future__ import annotations

import json

import httpx2 as httpx
import openai
import pytest

from tests.e2e.gateway import ADMIN_KEY, Gateway

pytestmark = pytest.mark.e2e
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


def test_admin_api_requires_admin_key(gateway: Gateway, key: str) -> None:
    assert httpx.get(gateway.base_url + "/admin/keys").status_code == 401
    assert (
        httpx.get(gateway.base_url + "/admin/keys", headers={"authorization": f"Bearer {key}"}).status_code
        == 401
    )


def test_create_use_revoke_over_http(gateway: Gateway) -> None:
    r = httpx.post(
        gateway.base_url + "/admin/keys",
        headers=ADMIN,
        json={"team": "eng", "name": "ci", "models": ["gpt-4o-mini"]},
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["key"].startswith("sk-sluice-") and created["models"] == ["gpt-4o-mini"]
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=created["key"], max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    listed = httpx.get(gateway.base_url + "/admin/keys", headers=ADMIN).json()["data"]
    assert created["id"] in {k["id"] for k in listed}
    assert all("key" not in k and "hash" not in k for k in listed), "listings never show secrets or hashes"
    assert httpx.delete(gateway.base_url + f"/admin/keys/{created['id']}", headers=ADMIN).status_code == 200
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert httpx.delete(gateway.base_url + f"/admin/keys/{created['id']}", headers=ADMIN).status_code == 404


def test_admin_rejects_unknown_team_and_fields(gateway: Gateway) -> None:
    assert (
        httpx.post(gateway.base_url + "/admin/keys", headers=ADMIN, json={"team": "ghosts"}).status_code
        == 400
    )
    assert (
        httpx.post(gateway.base_url + "/admin/keys", headers=ADMIN, json={"team": "eng", "x": 1}).status_code
        == 400
    )


def test_cli_revocation_reaches_running_gateway(gateway: Gateway) -> None:
    secret = gateway.create_key("eng", "--name", "to-revoke")
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=secret, max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    listed = json.loads(gateway.cli("keys", "list", "--config", str(gateway.config_path), "--json").stdout)
    key_id = next(k["id"] for k in listed if k["name"] == "to-revoke")
    gateway.cli("keys", "revoke", "--config", str(gateway.config_path), key_id)
    import time

    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        except openai.AuthenticationError:
            return
        time.sleep(0.05)
    pytest.fail("revoked key still accepted after 3 s")


def test_health_and_readiness(gateway: Gateway) -> None:
    assert httpx.get(gateway.base_url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(gateway.base_url + "/readyz")
    assert ready.status_code == 200 and ready.json()["store"] == "ok"
