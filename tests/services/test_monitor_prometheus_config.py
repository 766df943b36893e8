"""infra/prometheus: the config and alert rules pass promtool, and the key alerts fire."""
from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from chat_api.settings import ChatApiSettings
from domain.alerts import ERROR_RATE_WINDOW_SECONDS, MIN_REQUESTS_FOR_RATE

PROM_DIR = Path(__file__).resolve().parents[2] / "infra" / "prometheus"

# promtool is the Debian package prometheus (scripts/system-packages.sh installs it, CI runs that).
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool is not installed (Debian package prometheus: make system-packages)")


def _promtool(*args: str, cwd: Path = PROM_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


@needs_promtool
def test_config_is_valid_and_loads_the_alert_rules():
    result = _promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


@needs_promtool
def test_alert_rules_are_valid():
    result = _promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
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
        """))
    result = _promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def _rule_test(tmp_path: Path, groups: str) -> subprocess.CompletedProcess[str]:
    shutil.copy(PROM_DIR / "alerts.yml", tmp_path / "alerts.yml")
    (tmp_path / "alerts_test.yml").write_text(
        "rule_files: [alerts.yml]\nevaluation_interval: 15s\ntests:\n" + textwrap.dedent(groups))
    return _promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)


def test_rules_use_the_gateways_own_thresholds():
    """alerts.yml hard-codes the app's defaults (PromQL has no settings): when one of these
    changes, change the rule beside it."""
    fields = ChatApiSettings.model_fields
    assert fields["alert_error_rate"].default == 0.2  # LlmErrorRate: > 0.2
    assert ERROR_RATE_WINDOW_SECONDS == 300  # LlmErrorRate: [5m]
    assert MIN_REQUESTS_FOR_RATE == 5  # LlmErrorRate: >= 5 requests
    assert fields["circuit_threshold"].default == 5  # LlmUpstreamCircuitOpen: >= 5 failures


@needs_promtool
def test_error_rate_alert_counts_every_status_from_400_over_five_minutes(tmp_path):
    """As the webhook alert (domain.alerts.error_rate_alert): refusals (4xx) are errors too,
    the share is over 5 minutes and across replicas, above 20 %, and never on fewer than 5
    requests."""
    result = _rule_test(tmp_path, """\
          # 25 % refused (429), no 5xx at all, over two replicas: fires
          - interval: 15s
            input_series:
              - series: 'llm_gateway_requests_total{job="chat_api", instance="a:8001", route="/v1/chat/completions", status="200"}'
                values: '0+4x40'
              - series: 'llm_gateway_requests_total{job="chat_api", instance="b:8001", route="/v1/chat/completions", status="200"}'
                values: '0+2x40'
              - series: 'llm_gateway_requests_total{job="chat_api", instance="b:8001", route="/v1/chat/completions", status="429"}'
                values: '0+2x40'
            alert_rule_test:
              - eval_time: 5m
                alertname: LlmErrorRate
                exp_alerts:
                  - exp_labels: {severity: critical}
                    exp_annotations:
                      summary: "25% of chat requests were answered with an error (status >= 400) in the last 5 minutes"
                      description: "Over the gateway's ALERT_ERROR_RATE (20%). The console's request log shows which statuses and clients."
          # 15 % answered with a 5xx: under the threshold, nothing (however long it lasts)
          - interval: 15s
            input_series:
              - series: 'llm_gateway_requests_total{job="chat_api", instance="a:8001", route="/v1/chat/completions", status="200"}'
                values: '0+17x60'
              - series: 'llm_gateway_requests_total{job="chat_api", instance="a:8001", route="/v1/chat/completions", status="503"}'
                values: '0+3x60'
            alert_rule_test:
              - eval_time: 15m
                alertname: LlmErrorRate
                exp_alerts: []
          # every request failed, but only 4 of them in 5 minutes: nothing; the fifth: fires
          - interval: 15s
            input_series:
              - series: 'llm_gateway_requests_total{job="chat_api", instance="a:8001", route="/api/v1/chat", status="500"}'
                values: '0 1 2 3 4 4 4 4 4'
              - series: 'llm_gateway_requests_total{job="chat_api", instance="b:8001", route="/api/v1/chat", status="500"}'
                values: '0 0 0 0 0 0 0 0 1'
            alert_rule_test:
              - eval_time: 1m45s
                alertname: LlmErrorRate
                exp_alerts: []
              - eval_time: 2m
                alertname: LlmErrorRate
                exp_alerts:
                  - exp_labels: {severity: critical}
                    exp_annotations:
                      summary: "100% of chat requests were answered with an error (status >= 400) in the last 5 minutes"
                      description: "Over the gateway's ALERT_ERROR_RATE (20%). The console's request log shows which statuses and clients."
        """)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_circuit_alert_fires_when_an_upstream_is_open_after_the_breakers_threshold(tmp_path):
    """On the exported gauge llm_gateway_upstream_circuit_open, once the upstream has failed
    CIRCUIT_THRESHOLD (5) times in a row on that replica: one failure's short cooldown is not
    an outage, and a count left over after the cooldown ended (no traffic since) is not open."""
    result = _rule_test(tmp_path, """\
          - interval: 15s
            input_series:
              # an outage: failing on every try, cooling down all along
              - series: 'llm_gateway_upstream_consecutive_failures{job="chat_api", instance="a:8001", upstream="azure-kc"}'
                values: '0 1 2 3 4 5 6 7 8'
              - series: 'llm_gateway_upstream_circuit_open{job="chat_api", instance="a:8001", upstream="azure-kc"}'
                values: '0 1 1 1 1 1 1 1 1'
              # single failures between successes: each opens it for a second
              - series: 'llm_gateway_upstream_consecutive_failures{job="chat_api", instance="a:8001", upstream="openai"}'
                values: '0 1 0 1 0 1 0 1 0'
              - series: 'llm_gateway_upstream_circuit_open{job="chat_api", instance="a:8001", upstream="openai"}'
                values: '0 1 0 1 0 1 0 1 0'
              # failed long ago, cooldown over, nothing tried since
              - series: 'llm_gateway_upstream_consecutive_failures{job="chat_api", instance="b:8001", upstream="backup"}'
                values: '9 9 9 9 9 9 9 9 9'
              - series: 'llm_gateway_upstream_circuit_open{job="chat_api", instance="b:8001", upstream="backup"}'
                values: '0 0 0 0 0 0 0 0 0'
              # many failures on one replica, open on another after one failure: neither is an outage
              - series: 'llm_gateway_upstream_consecutive_failures{job="chat_api", instance="a:8001", upstream="eu"}'
                values: '7 7 7 7 7 7 7 7 7'
              - series: 'llm_gateway_upstream_circuit_open{job="chat_api", instance="a:8001", upstream="eu"}'
                values: '0 0 0 0 0 0 0 0 0'
              - series: 'llm_gateway_upstream_consecutive_failures{job="chat_api", instance="b:8001", upstream="eu"}'
                values: '1 1 1 1 1 1 1 1 1'
              - series: 'llm_gateway_upstream_circuit_open{job="chat_api", instance="b:8001", upstream="eu"}'
                values: '1 1 1 1 1 1 1 1 1'
            alert_rule_test:
              - eval_time: 1m
                alertname: LlmUpstreamCircuitOpen
                exp_alerts: []
              - eval_time: 1m15s
                alertname: LlmUpstreamCircuitOpen
                exp_alerts:
                  - exp_labels: {severity: warning, upstream: azure-kc}
                    exp_annotations:
                      summary: "Upstream azure-kc's circuit is open; its traffic goes to the other upstreams"
                      description: "5 failures in a row (CIRCUIT_THRESHOLD is 5). llmctl upstreams shows each upstream's health."
        """)
    assert result.returncode == 0, result.stdout + result.stderr
