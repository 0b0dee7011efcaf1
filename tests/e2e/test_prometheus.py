"""A real Prometheus server scrapes the gateway; PromQL over what it stored gives the expected
count and a non-zero rate."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
from pathlib import Path

import httpx2 as httpx
import openai
import pytest

from sluice.testing.fake_openai import FakeOpenAI
from tests.e2e.gateway import free_port, make_gateway, standard_config
from tests.telemetry.tools import require_binary

pytestmark = pytest.mark.e2e
MSG = [{"role": "user", "content": "hi"}]


def _query(base: str, promql: str) -> list[dict[str, object]]:
    r = httpx.get(f"{base}/api/v1/query?query={urllib.parse.quote(promql)}", timeout=5)
    assert r.status_code == 200, r.text
    return list(r.json()["data"]["result"])


def _scalar(base: str, promql: str) -> float | None:
    result = _query(base, promql)
    return float(result[0]["value"][1]) if result else None  # type: ignore[index]


def test_prometheus_scrapes_the_gateway_and_queries_its_rate(
    tmp_path: Path, fake_upstream: FakeOpenAI
) -> None:
    binary = require_binary("prometheus")
    gw = make_gateway(tmp_path, standard_config(tmp_path, fake_upstream.base_url))
    key = gw.create_key("eng")
    gw.start()
    prom_port = free_port()
    (tmp_path / "prometheus.yml").write_text(json.dumps({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "sluice", "static_configs": [{"targets": [f"127.0.0.1:{gw.port}"]}]}],
    }))  # fmt: skip
    prom = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("wb"),
    )  # fmt: skip
    base = f"http://127.0.0.1:{prom_port}"
    try:
        up = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and up != 1.0:
            time.sleep(0.5)
            try:
                up = _scalar(base, 'up{job="sluice"}')
            except httpx.HTTPError:
                continue
        assert up == 1.0, (tmp_path / "prometheus.log").read_text()[-2000:]
        client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0)
        sent = 0
        end = time.monotonic() + 6
        while time.monotonic() < end:  # a steady ~10 requests/s for 6 s
            client.chat.completions.create(model="gpt-4o-mini", messages=MSG)  # type: ignore[arg-type]
            sent += 1
            time.sleep(0.1)
        want = 'sum(sluice_requests_total{model="gpt-4o-mini",status_class="2xx"})'
        deadline = time.monotonic() + 10
        got = None
        while time.monotonic() < deadline and got != sent:
            time.sleep(0.5)
            got = _scalar(base, want)
        assert got == sent
        rate = _scalar(base, 'sum(rate(sluice_requests_total{model="gpt-4o-mini"}[15s]))')
        assert rate is not None and 1.0 < rate < 50.0  # requests/s, averaged over the last 15 s
        p99 = _scalar(
            base, "histogram_quantile(0.99, sum by (le) (rate(sluice_request_duration_seconds_bucket[10s])))"
        )
        assert p99 is not None and 0 < p99 <= 0.64
    finally:
        prom.terminate()
        prom.wait(20)
        gw.stop()
