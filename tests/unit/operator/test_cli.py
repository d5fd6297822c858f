"""`llmops` as a user runs it: exit codes, messages on stdout, JSON for scripts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from llm_operator.cli import main

EXAMPLES = sorted((Path(__file__).resolve().parents[3] / "examples").glob("*.yaml"))


def _write(tmp_path: Path, *docs: dict[str, Any]) -> str:
    path = tmp_path / "deployment.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return str(path)


def test_validate_examples_exit_zero(capsys: pytest.CaptureFixture[str]) -> None:
    args = [a for p in EXAMPLES for a in ("-f", str(p))]
    # The CPU examples serve file:///models/...: allowed as the chart's default values allow it.
    assert main(["validate", "--allowed-host-paths", "/models", *args]) == 0
    assert capsys.readouterr().out.count(": valid (") == len(EXAMPLES)


def test_validate_invalid_exits_2_and_names_fields(
    tmp_path: Path, manifest: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    manifest["spec"]["replicas"] = {"min": 9, "max": 2}
    good = json.loads(json.dumps(manifest))
    good["spec"]["replicas"] = {"min": 1, "max": 2}
    path = _write(tmp_path, good, manifest)
    assert main(["validate", "-f", path]) == 2
    out = capsys.readouterr().out
    assert f"{path}: valid (chat)" in out
    assert f"{path}#1: invalid" in out
    assert "spec.replicas.min: replicas.min must not exceed replicas.max (fix: lower min" in out


def test_validate_unreadable_file_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", "-f", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml: invalid" in capsys.readouterr().out


def test_cost_json(
    tmp_path: Path, manifest: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["cost", "-f", _write(tmp_path, manifest), "-o", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report[0]["name"] == "chat"
    assert [o["accelerator"] for o in report[0]["options"]] == ["L4", "A10G"]


def test_cost_table_uses_catalog_override(
    tmp_path: Path, manifest: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    override = tmp_path / "catalog.yaml"
    override.write_text("accelerators: [{name: L4, prices: {onDemand: 2.5, spot: 1.0}}]")
    assert main(["cost", "-f", _write(tmp_path, manifest), "--catalog", str(override)]) == 0
    out = capsys.readouterr().out
    assert "1x L4" in out and "2.50" in out and "10.00" in out  # 4 replicas x $2.50


def test_crd_command_prints_the_crd(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crd"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["kind"] == "CustomResourceDefinition"
