"""The first hour with the CLI: which database, what a policy serves, what a command says."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from sluice.cli import main
from sluice.store.base import create_store
from sluice.store.records import RequestRecord
from sluice.store.rows import request_to_row

POLICY = """
store: {url: "sqlite:///./sluice.db"}
providers:
  up: {type: openai, base_url: "http://127.0.0.1:9/v1"}
models:
  m: {targets: [{provider: up, model: m}]}
teams:
  eng: {}
"""


@pytest.fixture
def policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "policy" / "sluice.yaml"
    path.parent.mkdir()
    path.write_text(POLICY)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("SLUICE_CONFIG", raising=False)
    return path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_a_reading_command_refuses_a_database_that_is_not_there(policy: Path) -> None:
    code, _, err = run("keys", "list", "--config", str(policy))
    db = Path.cwd() / "sluice.db"
    assert code == 1
    assert f"no database at {db}" in err and "relative to the current directory" in err
    assert "sluice serve" in err
    assert not db.exists() and not Path(str(db) + ".key").exists()  # nothing was created
    for args in (["spend"], ["keys", "revoke", "key_x"], ["shadow", "report"]):
        code, _, err = run(*args, "--config", str(policy))
        assert code == 1 and "no database at" in err, args


def test_keys_create_says_which_database_it_used(policy: Path) -> None:
    db = Path.cwd() / "sluice.db"
    code, out, err = run("keys", "create", "--config", str(policy), "--team", "eng", "--rpm", "5")
    assert code == 0, err
    assert f"database: {db} (new: none was there" in err
    assert "another database" in err
    code, out, err = run("keys", "list", "--config", str(policy))
    assert code == 0 and f"database: {db}\n" in err
    header = out.splitlines()[0].split()
    assert {"RPM", "TPM", "CONCURRENT", "BUDGET_USD", "BUDGET_PERIOD"} <= set(header)  # limits shown
    assert " 5 " in out.splitlines()[1]


def test_check_config_takes_config_and_counts_in_english(policy: Path) -> None:
    code, out, err = run("check-config", "--config", str(policy))
    assert code == 0, err
    assert out.strip() == "ok: 1 provider, 1 model, 0 routes, 1 team"
    assert run("check-config", str(policy))[0] == 0  # as an argument too
    code, _, err = run("check-config", str(policy), "--config", "other.yaml")
    assert code == 2 and "once" in err


def test_an_empty_policy_warns_that_it_serves_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("{}\n")
    code, _, err = run("check-config", str(empty))
    assert code == 0
    assert "warning: the policy declares no models: the gateway will serve nothing" in err


def test_routes_explain_names_an_unknown_team(policy: Path) -> None:
    code, _, err = run("routes", "explain", "--config", str(policy), "--team", "nosuch", "--model", "m")
    assert code == 1
    assert "unknown team 'nosuch'" in err and "eng" in err


def test_spend_shows_small_costs_to_their_last_digit(policy: Path) -> None:
    db = Path.cwd() / "sluice.db"

    async def seed() -> None:
        store = create_store(f"sqlite:///{db}")
        await store.open()
        record = RequestRecord(id="r1", ts=time.time(), endpoint="chat", key_id="k", team="eng", user=None,
                               cost_usd=0.0000012, cost_nusd=1200, prompt_tokens=3)  # fmt: skip
        await store.insert_requests([request_to_row(record)])
        await store.close()

    asyncio.run(seed())
    code, out, err = run("spend", "--config", str(policy))
    assert code == 0, err
    assert "0.0000012" in out and "0.000000 " not in out
    code, out, _ = run("spend", "--config", str(policy), "--json")
    assert json.loads(out)[0]["cost_usd"] == pytest.approx(0.0000012)


def test_a_taken_port_is_one_line_naming_it(policy: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        proc = subprocess.run(
            [sys.executable, "-m", "sluice.cli", "serve", "--config", str(policy), "--port", str(port)],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    [line] = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error:")]
    assert f"cannot listen on 127.0.0.1:{port}: the port is in use" in line and "--port" in line
