"""TLS on the listener (``server.tls``) with a self-signed certificate the test makes; a reload
serves a renewed certificate to new connections, and a broken one is refused."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import httpx2 as httpx
import openai
import pytest

from sluice.testing.fake_openai import FakeOpenAI
from tests.conftest import IN_CI
from tests.e2e.gateway import ADMIN_KEY, make_gateway
from tests.e2e.test_reload import policy

pytestmark = pytest.mark.e2e


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        if IN_CI:
            pytest.fail("openssl is not installed (CI=true: missing packages fail)")
        pytest.skip("openssl is not installed (scripts/apt-packages.txt)")
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def served_pem(port: int) -> str:
    return ssl.get_server_certificate(("127.0.0.1", port), timeout=5)


def same_cert(a: str, b: str) -> bool:
    return ssl.PEM_cert_to_DER_cert(a) == ssl.PEM_cert_to_DER_cert(b)


def test_tls_listener_and_certificate_reload(tmp_path: Path, fake_upstream: FakeOpenAI) -> None:
    cert, key = self_signed(tmp_path, "first")
    tls = f"  tls: {{cert: {cert}, key: {key}}}"
    gw = make_gateway(tmp_path, policy(fake_upstream.base_url, tmp_path / "sluice.db", extra=tls))
    secret = gw.create_key("eng")
    gw.start(health_url=f"https://127.0.0.1:{gw.port}/healthz")
    base = f"https://127.0.0.1:{gw.port}"
    try:
        with openai.DefaultHttpxClient(verify=ssl.create_default_context(cafile=cert)) as http:
            c = openai.OpenAI(base_url=base + "/v1", api_key=secret, max_retries=0, http_client=http)
            assert c.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
            ).choices
        assert same_cert(served_pem(gw.port), cert.read_text())
        with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port is not answered
            httpx.get(f"http://127.0.0.1:{gw.port}/healthz", timeout=3)

        cert2, key2 = self_signed(tmp_path, "second")
        trust = ssl.create_default_context(cafile=cert)  # either certificate, before and after
        trust.load_verify_locations(cert2)
        shutil.copy(cert2, cert)  # renewed in place (cert-manager, certbot); the policy unchanged
        shutil.copy(key2, key)
        auth = {"authorization": f"Bearer {ADMIN_KEY}"}
        r = httpx.post(base + "/admin/reload", headers=auth, verify=trust, timeout=10)
        assert r.status_code == 200, r.text
        assert r.json()["changed"] is False
        assert same_cert(served_pem(gw.port), cert2.read_text())
        gw.config_path.write_text(gw.config_path.read_text() + "\n# by the CLI\n")
        out = gw.cli("reload", "--config", str(gw.config_path), "--url", base, "--cacert", str(cert2))
        assert "reloaded: policy version" in out.stdout

        key.write_text("not a key")  # a broken renewal: refused, the served certificate stays
        gw.config_path.write_text(gw.config_path.read_text() + "\n# broken\n")
        r = httpx.post(base + "/admin/reload", headers=auth, verify=trust, timeout=10)
        assert r.status_code == 422 and "server.tls" in r.json()["error"]["message"]
        assert same_cert(served_pem(gw.port), cert2.read_text())
    finally:
        gw.stop()
