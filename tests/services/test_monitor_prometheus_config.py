"""infra/prometheus: the config and alert rules pass promtool, and the key alerts fire."""
from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

PROM_DIR = Path(__file__).resolve().parents[2] / "infra" / "prometheus"

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")


def _promtool(*args: str, cwd: Path = PROM_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_config_is_valid_and_loads_the_alert_rules():
    result = _promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_alert_rules_are_valid():
    result = _promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_database_down_and_spend_alerts_fire(tmp_path):
    shutil.copy(PROM_DIR / "alerts.yml", tmp_path / "alerts.yml")
    (tmp_path / "alerts_test.yml").write_text(textwrap.dedent("""\
        rule_files: [alerts.yml]
        evaluation_interval: 15s
        tests:
          - interval: 15s
            input_series:
              - series: 'llm_database_up{job="monitor", instance="monitor:8002"}'
                values: '1 1 0 0 0 0 0 0 0'
              - series: 'llm_spend_usd{job="monitor", instance="monitor:8002", window="today", key_source="server"}'
                values: '10 20 60 60 60 60 60 60 60'
              - series: 'llm_gateway_requests_total{job="chat_api", instance="a:8001", status="200"}'
                values: '0+60x40'
              - series: 'llm_gateway_requests_total{job="chat_api", instance="a:8001", status="503"}'
                values: '0+30x40'
              - series: 'llm_gateway_upstream_consecutive_failures{job="chat_api", instance="a:8001", upstream="azure-kc"}'
                values: '0 1 3 4 5 6 7 8 9 10'
              - series: 'llm_gateway_upstream_consecutive_failures{job="chat_api", instance="a:8001", upstream="openai"}'
                values: '0 0 0 0 0 0 0 0 0 0'
            alert_rule_test:
              - eval_time: 2m
                alertname: LlmDatabaseDown
                exp_alerts:
                  - exp_labels: {severity: critical, job: monitor, instance: "monitor:8002"}
                    exp_annotations:
                      summary: The monitor cannot query the database
                      description: "Spend is spooled by chat_api while the database is away; budgets cannot be checked."
              - eval_time: 1m
                alertname: LlmSpendTodayOverBudget
                exp_alerts:
                  - exp_labels: {severity: warning}
                    exp_annotations:
                      summary: "Today's LLM spend is 60.00 USD (over 50 USD)"
              - eval_time: 2m
                alertname: LlmUpstreamCircuitOpen
                exp_alerts:
                  - exp_labels: {severity: warning, upstream: azure-kc}
                    exp_annotations:
                      summary: "Upstream azure-kc keeps failing; its traffic goes to the other upstreams"
                      description: "9 failures in a row. llmctl upstreams shows each upstream's health."
              - eval_time: 10m
                alertname: LlmUpstreamErrorRate
                exp_alerts:
                  - exp_labels: {severity: critical}
                    exp_annotations:
                      summary: "33.33% of chat requests fail with a 5xx"
        """))
    result = _promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
