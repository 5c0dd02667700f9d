"""The Prometheus rules and configurations, checked and unit-tested by Debian's promtool.

- ``promtool check config`` on both configurations (compose and local run), which also checks their rule files;
- ``promtool test rules`` on deploy/prometheus/tests/: every alert fires on the series that should fire it and stays
  silent on its neighbour, and the recording rules compute the expected throughput and percentiles;
- every metric the rules read is one the services export (signalements/metrics.py), or Prometheus' own ``up``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from promql_check import promql_metric_names, registry_sample_names, run_promtool

from signalements.settings import PROJECT_ROOT

PROMETHEUS_DIR = PROJECT_ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "rules" / "signalements.rules.yml"
RULE_TESTS = PROMETHEUS_DIR / "tests" / "signalements.rules.test.yml"
PROMETHEUS_OWN_METRICS = {"up"}
# What the issue asks the alerts to watch, by alert name.
REQUIRED_ALERTS = {
    "SignalementsIntakeRejecting", "SignalementsUnroutedShare", "SignalementsDeadLetters",
    "SignalementsUnitQueueLagging", "SignalementsNoReports", "SignalementsEndToEndLatencyHigh",
}


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"] for rule in group["rules"]]


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.local.yml"])
def test_promtool_accepts_the_configuration_and_its_rules(config: str) -> None:
    result = run_promtool("check", "config", str(PROMETHEUS_DIR / config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rules found" in result.stdout, "the configuration must load the rule files"


def test_promtool_accepts_the_rules() -> None:
    result = run_promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass() -> None:
    result = run_promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rule_unit_tests_can_fail(tmp_path: Path) -> None:
    """The rule tests see the thresholds: with the unit-queue threshold raised, the firing case must fail."""
    broken_rules = tmp_path / "rules" / RULES.name
    broken_rules.parent.mkdir()
    text = RULES.read_text(encoding="utf-8")
    assert text.count('{group_kind="unit-consumer"}) >= 20') == 1
    broken_rules.write_text(text.replace('{group_kind="unit-consumer"}) >= 20', '{group_kind="unit-consumer"}) >= 2000'))
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / RULE_TESTS.name).write_text(RULE_TESTS.read_text(encoding="utf-8"))
    result = run_promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path / "tests")
    assert result.returncode != 0
    assert "SignalementsUnitQueueLagging" in result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_silent() -> None:
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    assert REQUIRED_ALERTS <= alerts
    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    firing = {case["alertname"] for case in cases if case["exp_alerts"]}
    silent = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert alerts <= firing, f"alerts never shown firing: {sorted(alerts - firing)}"
    assert alerts <= silent, f"alerts never shown silent: {sorted(alerts - silent)}"
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    tested = {
        name for test in tests for case in test.get("promql_expr_test", []) for name in promql_metric_names(case["expr"])
    }
    assert recorded <= tested, f"recording rules without a test: {sorted(recorded - tested)}"


def test_rules_read_only_exported_metrics() -> None:
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    used = set().union(*(promql_metric_names(rule["expr"]) for rule in rules()))
    unknown = used - registry_sample_names() - recorded - PROMETHEUS_OWN_METRICS
    assert not unknown, f"not metrics of signalements/metrics.py: {sorted(unknown)}"


def test_alerts_have_a_severity_and_a_summary() -> None:
    for rule in rules():
        if "alert" in rule:
            assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]
