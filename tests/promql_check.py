"""PromQL as the tests check it: which metric names an expression uses, which names the services export, and
Debian's promtool to parse expressions and run rule tests (scripts/install-test-tools.sh installs it)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from signalements.metrics import PipelineMetrics

PROMQL_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
    "inf", "nan", "start", "end",
}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names an expression selects: identifiers that are not functions, aggregations, keywords or labels."""
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges and subqueries, with Grafana's $__rate_interval
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)  # label lists
    names = set()
    for match in re.finditer(r"(?<![\w.$])[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        if text[match.end():].lstrip().startswith("(") or match.group() in PROMQL_KEYWORDS:
            continue
        names.add(match.group())
    return names


def registry_sample_names() -> set[str]:
    """Every sample name PipelineMetrics exposes. Labelled metrics have no samples before their first use, so the
    names also come from each family's type, as the exposition format suffixes them."""
    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "info": ("_info",),
    }
    names = set()
    for family in PipelineMetrics().registry.collect():
        assert family.type in suffixes, f"{family.name}: type {family.type} not handled here"
        names |= {family.name + suffix for suffix in suffixes[family.type]}
        names |= {sample.name for sample in family.samples}
    return names


def promtool() -> str:
    executable = shutil.which("promtool")
    if executable is None:
        pytest.fail(
            "promtool is not installed: it checks and tests the Prometheus rules and configuration. "
            "Install it with `bash scripts/install-test-tools.sh` (Debian's `apt-get install prometheus`).",
            pytrace=False,
        )
    return executable


def run_promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], check=False, capture_output=True, text=True, timeout=120, cwd=cwd)


def check_expressions_parse(expressions: list[str], directory: Path) -> subprocess.CompletedProcess[str]:
    """Parse every expression with Prometheus' own parser: each becomes a recording rule of a temporary rules file
    that ``promtool check rules`` reads. Grafana's range variables are replaced by a duration first."""
    rules = [
        {"record": f"dashboard:query_{index}", "expr": grafana_to_promql(expr)}
        for index, expr in enumerate(expressions)
    ]
    path = directory / "dashboard-queries.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    return run_promtool("check", "rules", str(path))


def grafana_to_promql(expr: str) -> str:
    """Grafana's global variables as Prometheus sees them once Grafana has substituted them."""
    expr = re.sub(r"\$__(rate_interval|interval|range)\b", "5m", expr)
    return expr.replace("$__range_s", "300")
