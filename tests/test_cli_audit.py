"""``sluice keys create / limits / revoke`` are audited as ``cli:<OS user>``; ``sluice audit``
shows them; ``sluice spend --by team,model`` groups by two dimensions."""

from __future__ import annotations

import asyncio
import getpass
import json
import time
from pathlib import Path

from sluice.store.base import create_store
from sluice.store.records import RequestRecord
from sluice.store.rows import request_to_row
from tests.test_cli import policy, run  # noqa: F401  (the fixture)


def test_key_changes_are_audited_and_listed(policy: Path) -> None:  # noqa: F811
    code, out, err = run("keys", "create", "--config", str(policy), "--team", "eng", "--name", "a", "--json")
    assert code == 0, err
    key = json.loads(out)
    code, out, err = run(
        "keys", "limits", "--config", str(policy), key["id"], "--rpm", "5", "--budget-usd", "2"
    )
    assert code == 0, err
    assert json.loads(out.split(": ", 1)[1]) == {"rpm": 5, "tpm": None, "concurrent": None, "budget_usd": 2.0,
                                                 "budget_period": "monthly"}  # fmt: skip
    assert run("keys", "limits", "--config", str(policy), key["id"], "--rpm", "none")[0] == 0
    assert run("keys", "limits", "--config", str(policy), key["id"], "--rpm", "-3")[0] == 1
    assert run("keys", "revoke", "--config", str(policy), key["id"])[0] == 0
    assert run("keys", "limits", "--config", str(policy), key["id"], "--rpm", "3")[0] == 1, "revoked: refused"
    code, out, err = run("audit", "--config", str(policy), "--json")
    assert code == 0, err
    entries = json.loads(out)
    assert [e["action"] for e in entries] == [
        "key.revoked",
        "key.limits_changed",
        "key.limits_changed",
        "key.created",
    ]
    assert {e["actor"] for e in entries} == {f"cli:{getpass.getuser()}"} and {e["via"] for e in entries} == {
        "cli"
    }
    assert entries[2]["before"]["rpm"] is None and entries[2]["after"]["rpm"] == 5
    assert key["key"] not in out, "the secret never reaches the audit trail"
    code, out, _ = run("audit", "--config", str(policy))
    assert "rpm: None -> 5" in out and "key.revoked" in out
    assert run("audit", "--config", str(policy), "--since", "yesterday-ish")[0] == 1


def test_spend_by_two_dimensions(policy: Path) -> None:  # noqa: F811
    db = Path.cwd() / "sluice.db"

    async def seed() -> None:
        store = create_store(f"sqlite:///{db}")
        await store.open()
        rows = [
            RequestRecord(id=f"r{i}", ts=time.time(), endpoint="chat", key_id="k", team=team, user=None,
                          requested_model=model, cost_nusd=1000 * (i + 1), prompt_tokens=1, tags=["f"])
            for i, (team, model) in enumerate([("eng", "a"), ("eng", "b"), ("eng", "a"), ("ops", "a")])
        ]  # fmt: skip
        await store.insert_requests([request_to_row(r) for r in rows])
        await store.close()

    asyncio.run(seed())
    code, out, err = run("spend", "--config", str(policy), "--by", "team,model", "--json")
    assert code == 0, err
    got = {(r["team"], r["model"]): (r["requests"], r["cost_nusd"]) for r in json.loads(out)}
    assert got == {("eng", "a"): (2, 4000), ("eng", "b"): (1, 2000), ("ops", "a"): (1, 4000)}
    code, out, _ = run("spend", "--config", str(policy), "--by", "tag", "--json")
    assert [(r["tag"], r["requests"]) for r in json.loads(out)] == [("f", 4)]
    code, _, err = run("spend", "--config", str(policy), "--by", "team,nope")
    assert code == 1 and "group_by must be" in err
