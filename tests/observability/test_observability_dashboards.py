"""The Grafana dashboards import into Grafana 10+, and the committed files are up to date.

Import requirements checked: schemaVersion >= 36, a datasource template variable that every
panel and query uses, unique panel ids, complete non-overlapping gridPos, a query with an
expression on every panel; and every series selector filtered by the dashboard's variables
(the gateway's series, labelled by model, by the `model` variable).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from llm_operator.observability import generated_files
from llm_operator.observability.__main__ import main as generate

CHART = Path(__file__).resolve().parents[2] / "charts" / "llm-operator"
DASHBOARDS = sorted((CHART / "files" / "dashboards").glob("*.json"))
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PANEL_TYPES = {"row", "timeseries", "stat", "bargauge"}
SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\{([^}]*)\}")
NAMESPACE_FILTER = 'namespace=~"$namespace"'
DEPLOYMENT_FILTER = 'deployment=~"$deployment"'
MODEL_FILTER = 'model=~"$model"'
# The operator's cold-start histogram names the LLMDeployment `llmdeployment`.
COLD_START_FILTERS = (NAMESPACE_FILTER, 'llmdeployment=~"$deployment"')


def load(path: Path) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(path.read_text())
    return dashboard


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expr) of every panel target and annotation."""
    out = [
        (f"panel {p['id']} {p['title']!r}", t["expr"])
        for p in dashboard["panels"]
        for t in p.get("targets", [])
    ]
    out += [
        (f"annotation {a['name']!r}", a["expr"])
        for a in dashboard["annotations"]["list"]
        if a.get("datasource") == DATASOURCE
    ]
    return out


def test_committed_files_are_what_the_generator_writes() -> None:
    stale = [
        path
        for path, text in generated_files().items()
        if not (CHART / path).is_file() or (CHART / path).read_text() != text
    ]
    assert not stale, f"stale: {stale}; run `make observability`"
    assert generate(["--check", "--chart", str(CHART)]) == 0
    assert {p.name for p in DASHBOARDS} == {"fleet-cost.json", "deployment-performance.json"}


def test_check_mode_reports_a_stale_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert generate(["--chart", str(tmp_path)]) == 0
    edited = tmp_path / "files" / "dashboards" / "fleet-cost.json"
    edited.write_text(edited.read_text().replace("Fleet cost", "Fleet kost"))
    assert generate(["--check", "--chart", str(tmp_path)]) == 1
    assert str(edited) in capsys.readouterr().err


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_meets_grafana_10_import_requirements(path: Path) -> None:
    dashboard = load(path)
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["uid"].startswith("llmops-") and len(dashboard["uid"]) <= 40
    assert dashboard["title"] and "id" not in dashboard  # a fixed id would clash on import
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert dashboard["templating"]["list"][0]["name"] == "datasource"
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("namespace", "deployment"):
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"] == DATASOURCE
        assert variables[name]["definition"].startswith("label_values(")
    assert NAMESPACE_FILTER in variables["deployment"]["definition"]

    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) and i > 0 for i in ids)
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        assert panel["type"] in PANEL_TYPES, panel["title"]
        grid = panel["gridPos"]
        assert set(grid) == {"h", "w", "x", "y"} and grid["x"] + grid["w"] <= 24
        covered = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not covered & cells, f"panel {panel['title']!r} overlaps another"
        cells |= covered
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE and panel["description"], panel["title"]
        targets = panel["targets"]
        assert targets, f"panel {panel['title']!r} has no query"
        assert len({t["refId"] for t in targets}) == len(targets)
        for target in targets:
            assert target["expr"].strip() and target["datasource"] == DATASOURCE


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_query_filters_by_the_dashboard_variables(path: Path) -> None:
    """Namespace everywhere; deployment too, except on the per-namespace (showback) series;
    the gateway's series by model only."""
    for where, expr in queries(load(path)):
        selectors = SELECTOR.findall(expr)
        assert selectors, f"{where}: no series selector in {expr}"
        for metric, matchers in selectors:
            if metric.startswith("llm_gateway_"):
                assert MODEL_FILTER in matchers, f"{where}: {metric} not filtered by model"
                continue
            if metric.startswith("llmops:"):  # chargeback: by namespace and model
                assert NAMESPACE_FILTER in matchers, f"{where}: {metric} not by namespace"
                if not metric.startswith("llmops:namespace_"):
                    assert MODEL_FILTER in matchers, f"{where}: {metric} not by model"
                continue
            if metric.startswith("llmops_cold_start_seconds"):
                assert all(f in matchers for f in COLD_START_FILTERS), f"{where}: {matchers}"
                continue
            assert NAMESPACE_FILTER in matchers, f"{where}: {metric} not filtered by namespace"
            if not metric.startswith("namespace:"):
                assert DEPLOYMENT_FILTER in matchers, f"{where}: {metric} not by deployment"


def test_gateway_row_shows_the_contracts_metrics() -> None:
    """Issue 22 item 4: the Gateway row reads every gateway metric and the cold start."""
    dashboard = load(CHART / "files" / "dashboards" / "deployment-performance.json")
    rows = [p for p in dashboard["panels"] if p["type"] == "row"]
    assert rows[-1]["title"] == "Gateway"
    row_y = rows[-1]["gridPos"]["y"]
    exprs = " ".join(
        t["expr"] for p in dashboard["panels"] if p["gridPos"]["y"] > row_y for t in p["targets"]
    )
    for metric in (
        "llm_gateway_requests_total",
        "llm_gateway_responses_total",
        "llm_gateway_in_flight",
        "llm_gateway_held_requests",
        "llm_gateway_holds_total",
        "llm_gateway_hold_seconds_bucket",
        "llm_gateway_retries_total",
        "llm_gateway_added_latency_seconds_bucket",
        "llm_gateway_replicas",
        "llmops_cold_start_seconds_bucket",
    ):
        assert metric + "{" in exprs, metric
    for by in ("picked_by", "outcome", "state", "code"):
        assert f"by ({by})" in exprs or f", {by})" in exprs, by
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["model"]["definition"] == "label_values(llm_gateway_replicas, model)"


def test_autoscaler_decisions_are_annotations() -> None:
    dashboard = load(CHART / "files" / "dashboards" / "deployment-performance.json")
    (decisions,) = [
        a for a in dashboard["annotations"]["list"] if a.get("datasource") == DATASOURCE
    ]
    assert "llmops_autoscaler_decisions_total" in decisions["expr"] and decisions["enable"]
    assert "{{direction}}" in decisions["titleFormat"]
