"""The chart's Prometheus rules: promtool accepts them and its unit tests pass.

prometheus-rules-test.yaml (beside this file) holds the promtool unit tests: cost, budget use
and $/1M tokens per deployment and per namespace, and every alert firing and not firing.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from llm_operator.observability import rules
from llm_server.metrics import TTFT_BUCKETS

ROOT = Path(__file__).resolve().parents[2]
RULES_FILE = ROOT / "charts" / "llm-operator" / "files" / "prometheus-rules.yaml"
UNIT_TESTS = Path(__file__).parent / "prometheus-rules-test.yaml"
PROMTOOL = shutil.which("promtool")


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL, "promtool is not installed: apt-get install prometheus (make tools)"
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, check=False)


def _rules_by_kind() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    every = [rule for group in groups for rule in group["rules"]]
    return [r for r in every if "record" in r], [r for r in every if "alert" in r]


def test_promtool_checks_the_rules_file() -> None:
    result = _promtool("check", "rules", str(RULES_FILE))
    assert result.returncode == 0, result.stdout + result.stderr
    recorded, alerts = _rules_by_kind()
    assert f"SUCCESS: {len(recorded) + len(alerts)} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = _promtool("test", "rules", str(UNIT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_and_cost_rule_has_a_unit_test() -> None:
    tests = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    tested_alerts = {t["alertname"] for test in tests for t in test.get("alert_rule_test", [])}
    tested_exprs = " ".join(t["expr"] for test in tests for t in test.get("promql_expr_test", []))
    _, alerts = _rules_by_kind()
    assert tested_alerts == {a["alert"] for a in alerts}
    untested = [r["record"] for r in rules.cost_rules() if r["record"] not in tested_exprs]
    assert not untested


def test_alerts_carry_severity_summary_and_description() -> None:
    _, alerts = _rules_by_kind()
    for alert in alerts:
        assert alert["labels"]["severity"] in {"critical", "warning"}, alert["alert"]
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]
        assert alert["for"], alert["alert"]


def test_ttft_objective_is_a_histogram_bucket_boundary() -> None:
    # Otherwise the le="..." selector of the SLO rules would match no bucket at all.
    assert rules.TTFT_SLO_SECONDS in TTFT_BUCKETS
    slo = [r for r in _rules_by_kind()[0] if "slo_misses" in r["record"]]
    assert slo and all(f'le="{rules.TTFT_SLO_SECONDS:g}"' in r["expr"] for r in slo)
