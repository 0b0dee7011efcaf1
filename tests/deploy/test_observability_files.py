"""deploy/: the Prometheus alerting rules pass promtool (syntax and unit tests that make them fire),
and every metric the Grafana dashboard and the rules query is one the gateway exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from sluice.telemetry.metrics import GatewayMetrics
from sluice.telemetry.wiring import BREAKER_STATES
from tests.telemetry.tools import REPO, promtool

RULES = REPO / "deploy/prometheus/sluice-alerts.yml"
DASHBOARD = REPO / "deploy/grafana/sluice-dashboard.json"
#: Families registered at start-up or served per scrape (telemetry.wiring, server.metrics_routes).
RUNTIME = {"sluice_breaker_state", "sluice_request_log_queue_depth", "sluice_request_log_spooled_records_total",
           "sluice_request_log_written_records_total", "sluice_budget_used_usd", "sluice_budget_limit_usd"}  # fmt: skip


def _exported() -> set[str]:
    names = set(GatewayMetrics().registry.snapshot()) | RUNTIME
    return names | {f"{n}_{s}" for n in names for s in ("bucket", "sum", "count")}


def _referenced(text: str) -> set[str]:
    return set(re.findall(r"\bsluice_[a-z_]+", text))


def test_rules_pass_promtool_check() -> None:
    out = promtool("check", "rules", str(RULES))
    assert out.returncode == 0, out.stdout + out.stderr


def test_rules_and_dashboard_query_only_exported_metrics() -> None:
    dash = json.loads(DASHBOARD.read_text())
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
    assert {"sluice_requests_total", "sluice_time_to_first_token_seconds_bucket", "sluice_cost_usd_total",
            "sluice_cache_lookups_total", "sluice_breaker_state"} <= _referenced(exprs)  # fmt: skip
    assert _referenced(exprs) <= _exported()
    assert _referenced(RULES.read_text()) <= _exported()
    assert "open" in BREAKER_STATES


UNIT = """
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'sluice_breaker_state{{provider="up",model="m",state="open"}}'
        values: '0 1 1 1 1'
      - series: 'sluice_budget_used_usd{{team="eng"}}'
        values: '70 85 85'
      - series: 'sluice_budget_limit_usd{{team="eng"}}'
        values: '100 100 100'
      - series: 'sluice_upstream_attempts_total{{provider="up",model="m",status_class="5xx",error_kind="server"}}'
        values: '0+10x15'
      - series: 'sluice_upstream_attempts_total{{provider="up",model="m",status_class="2xx",error_kind="none"}}'
        values: '0+90x15'
    alert_rule_test:
      - eval_time: 1m
        alertname: SluiceBreakerOpen
        exp_alerts: []
      - eval_time: 3m
        alertname: SluiceBreakerOpen
        exp_alerts:
          - exp_labels: {{severity: warning, provider: up, model: m}}
            exp_annotations:
              summary: "Circuit breaker open for up/m"
              description: "Requests skip this target until a probe succeeds."
      - eval_time: 0m
        alertname: SluiceBudget80Percent
        exp_alerts: []
      - eval_time: 1m
        alertname: SluiceBudget80Percent
        exp_alerts:
          - exp_labels: {{severity: info, team: eng}}
            exp_annotations:
              summary: "Team eng has used 85% of its budget"
      - eval_time: 12m
        alertname: SluiceProviderErrorRate
        exp_alerts:
          - exp_labels: {{severity: warning, provider: up}}
            exp_annotations:
              summary: "up: 10% of upstream attempts fail"
              description: "More than 5% of attempts to provider up failed over 5 minutes."
"""


def test_rules_fire_on_the_conditions_they_name(tmp_path: Path) -> None:
    unit = tmp_path / "alerts_test.yml"
    unit.write_text(UNIT.format(rules=json.dumps(str(RULES))))
    out = promtool("test", "rules", str(unit))
    assert out.returncode == 0, out.stdout + out.stderr
