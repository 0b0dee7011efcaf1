"""Every request is recorded (off the hot path), survives SIGTERM, and reads back as spend."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import httpx2 as httpx
import openai
import pytest

from sluice.testing.fake_openai import FakeOpenAI
from tests.e2e.gateway import ADMIN_KEY, make_gateway, standard_config

pytestmark = pytest.mark.e2e


def _rows(db: Path) -> list[sqlite3.Row]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute("SELECT * FROM requests ORDER BY ts").fetchall()
    finally:
        conn.close()


def test_records_flushed_on_sigterm_none_lost(tmp_path: Path, fake_upstream: FakeOpenAI) -> None:
    # A long flush interval: without the shutdown flush, these records would still be in memory.
    cfg = standard_config(tmp_path, fake_upstream.base_url).replace(
        "flush_interval_s: 0.05", "flush_interval_s: 60"
    )
    gw = make_gateway(tmp_path, cfg)
    key = gw.create_key("eng", "--user", "alice")
    gw.start()
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0)
    ids = []

    def worker() -> None:
        for _ in range(25):
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "count these words"}],
                extra_headers={"x-sluice-tags": "batch,e2e"},
            )  # fmt: skip
            ids.append(raw.headers["x-request-id"])

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "x y"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "echo: x y"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert gw.stop() == 0
    rows = _rows(gw.db_path)
    assert len(rows) == 102
    by_id = {r["id"]: r for r in rows}
    assert set(ids) <= set(by_id)
    r = by_id[ids[0]]
    assert (r["team"], r["user_id"], r["requested_model"], r["served_model"], r["provider"]) == (
        "eng", "alice", "gpt-4o-mini", "gpt-4o-mini", "up",
    )  # fmt: skip
    assert json.loads(r["tags"]) == ["batch", "e2e"]
    assert r["prompt_tokens"] > 0 and r["completion_tokens"] > 0 and r["cost_usd"] > 0
    assert r["latency_ms"] > 0 and r["status"] == 200 and r["attempts"] == 1
    streamed = [r for r in rows if r["stream"]]
    assert len(streamed) == 1 and streamed[0]["completion_tokens"] > 0, (
        "streams are metered without include_usage"
    )
    assert streamed[0]["ttft_ms"] is not None and streamed[0]["ttft_ms"] <= streamed[0]["latency_ms"]
    failed = [r for r in rows if r["status"] == 404]
    assert len(failed) == 1 and failed[0]["error_source"] == "gateway"


def test_provider_errors_are_attributed(gateway, key) -> None:  # type: ignore[no-untyped-def]
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.InternalServerError) as err:
        client.chat.completions.create(model="fault-500", messages=[{"role": "user", "content": "x"}])
    rid = err.value.response.headers["x-request-id"]
    for _ in range(50):
        rows = [r for r in _rows(gateway.db_path) if r["id"] == rid]
        if rows:
            break
        import time

        time.sleep(0.05)
    assert (
        rows[0]["error_source"] == "provider"
        and rows[0]["error_kind"] == "server"
        and rows[0]["status"] == 502
    )


def test_spend_cli_and_admin_api_agree(gateway, key) -> None:  # type: ignore[no-untyped-def]
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0)
    for _ in range(3):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "spend"}])
    import time

    time.sleep(0.3)
    out = gateway.cli("spend", "--config", str(gateway.config_path), "--by", "team", "--json")
    cli_rows = {r["team"]: r for r in json.loads(out.stdout)}
    api = httpx.get(
        gateway.base_url + "/admin/spend?group_by=team", headers={"authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert api.status_code == 200
    api_rows = {r["group"]: r for r in api.json()["data"]}
    since = httpx.get(
        gateway.base_url + "/admin/spend?group_by=team&since=2026-01-02",
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
    ).json()["since"]
    assert since == "2026-01-02T00:00:00+00:00"  # ISO 8601, as the CLI shows it
    assert api.json()["since"] is None
    assert cli_rows["eng"]["requests"] >= 3
    assert cli_rows["eng"]["cost_usd"] == pytest.approx(api_rows["eng"]["cost_usd"], rel=0.05)
    for group in ("key", "user", "model", "day"):
        r = httpx.get(
            gateway.base_url + f"/admin/spend?group_by={group}&since=7d",
            headers={"authorization": f"Bearer {ADMIN_KEY}"},
        )
        assert r.status_code == 200 and r.json()["data"], group
    assert (
        httpx.get(
            gateway.base_url + "/admin/spend?group_by=planet",
            headers={"authorization": f"Bearer {ADMIN_KEY}"},
        ).status_code
        == 400
    )


def test_access_log_lines_are_json_once(gateway, key) -> None:  # type: ignore[no-untyped-def]
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "log me"}])
    import time

    time.sleep(0.2)
    lines = [json.loads(line) for line in gateway.log_path.read_text().splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("logger") == "sluice.access"]
    assert access, "no access log line"
    last = access[-1]
    assert last["msg"] == "access" and last["status"] == 200 and isinstance(last["prompt_tokens"], int)
    assert last["model"] == "gpt-4o-mini" and last["request_id"].startswith("req_")
