"""Start the real gateway process on loopback, in front of fake upstreams, for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

UPSTREAM_KEY = "sk-upstream-SECRET-0123456789abcdef"
ADMIN_KEY = "admin-SECRET-fedcba9876543210"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Gateway:
    workdir: Path
    config_path: Path
    port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "gateway.log"

    @property
    def db_path(self) -> Path:
        return self.workdir / "sluice.db"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sluice.cli", *args], env=self.env, cwd=self.workdir,
            capture_output=True, text=True, check=check, timeout=60,
        )  # fmt: skip

    def create_key(self, team: str, *extra: str) -> str:
        out = self.cli("keys", "create", "--config", str(self.config_path), "--team", team, "--json", *extra)
        data = json.loads(out.stdout)
        self.keys[data["id"]] = data["key"]
        return str(data["key"])

    def start(self, health_url: str | None = None) -> Gateway:
        """Start and wait for /healthz (``health_url`` for TLS: its certificate is not checked here)."""
        url = health_url or self.base_url + "/healthz"
        unverified = ssl.create_default_context()
        unverified.check_hostname, unverified.verify_mode = False, ssl.CERT_NONE
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sluice.cli", "serve", "--config", str(self.config_path), "--port", str(self.port)],
            env=self.env, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=1, context=unverified) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("gateway did not become healthy")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc is None:
            return 0
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code


def make_gateway(workdir: Path, config_yaml: str) -> Gateway:
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "sluice.yaml"
    config_path.write_text(config_yaml)
    env = {
        **os.environ,
        "SLUICE_TEST_UPSTREAM_KEY": UPSTREAM_KEY,
        "SLUICE_TEST_ADMIN_KEY": ADMIN_KEY,
        "PYTHONUNBUFFERED": "1",
    }
    return Gateway(workdir=workdir, config_path=config_path, port=free_port(), env=env)


def standard_config(workdir: Path, upstream_url: str) -> str:
    faults = ["fault-500", "fault-429", "fault-529", "fault-400", "fault-401", "fault-context",
              "fault-malformed", "fault-drop-stream", "fault-stream-error"]  # fmt: skip
    fault_models = "\n".join(f"  {f}: {{targets: [{{provider: up, model: {f}}}]}}" for f in faults)
    return f"""
server:
  admin_key: env:SLUICE_TEST_ADMIN_KEY
  max_body_bytes: 200000
  shutdown_grace_s: 5
store:
  url: sqlite:///{workdir}/sluice.db
  flush_interval_s: 0.05
  key_refresh_s: 0.2
providers:
  up: {{type: openai, base_url: "{upstream_url}", api_key: env:SLUICE_TEST_UPSTREAM_KEY, timeout_s: 10}}
  slow: {{type: openai, base_url: "{upstream_url}", api_key: env:SLUICE_TEST_UPSTREAM_KEY, timeout_s: 0.5}}
  dead: {{type: openai, base_url: "http://127.0.0.1:9/v1", api_key: env:SLUICE_TEST_UPSTREAM_KEY, timeout_s: 2}}
models:
  gpt-4o-mini: {{targets: [{{provider: up, model: gpt-4o-mini}}]}}
  parallel: {{targets: [{{provider: up, model: parallel-tools}}]}}
  embed-small: {{targets: [{{provider: up, model: text-embedding-3-small}}]}}
  slow: {{targets: [{{provider: slow, model: fault-slow}}]}}
  down: {{targets: [{{provider: dead, model: gpt-4o-mini}}]}}
  down-then-up: {{targets: [{{provider: dead, model: gpt-4o-mini}}, {{provider: up, model: gpt-4o-mini}}]}}
{fault_models}
teams:
  eng: {{}}
  billing: {{models: [gpt-4o-mini]}}
logging:
  access_log: true
"""
