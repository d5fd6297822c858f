"""The chargeback recording rules (issue 23): promtool's unit tests of chargeback-rules-test.yaml
pass, and each chargeback rule has one."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from llm_operator.observability.chargeback import RECORDED, chargeback_rules
from llm_operator.observability.rules import rule_groups

UNIT_TESTS = Path(__file__).parent / "chargeback-rules-test.yaml"


def test_promtool_unit_tests_of_the_chargeback_rules_pass() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed: apt-get install prometheus (make tools)"
    result = subprocess.run(
        [promtool, "test", "rules", str(UNIT_TESTS)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_chargeback_rule_is_shipped_and_tested() -> None:
    tests = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    tested = {t["expr"] for test in tests for t in test["promql_expr_test"]}
    assert {r["record"] for r in chargeback_rules()} == set(RECORDED) == tested
    (group,) = [g for g in rule_groups()["groups"] if g["name"] == "llmops.chargeback"]
    assert group["rules"] == chargeback_rules()
