"""The operator's llmops_* series: exact names and labels, label moves, forgetting."""

from __future__ import annotations

from llm_operator import metrics
from llm_operator.plan.types import CostReport

NS, NAME = "metrics-test", "chat"


def report(**overrides: object) -> CostReport:
    values: dict[str, object] = {
        "accelerator": "L4",
        "capacity": "spot-preferred",
        "dollars_per_hour": 1.5,
        "budget_dollars_per_hour": 5.0,
        "dollars_per_million_tokens": 0.42,
        "desired": 3,
        "current": 2,
        "ready": 1,
        "starting": 1,
        "budget_limited": True,
        "max_limited": False,
        "direction": 1,
        "scrape_failures": 2,
    }
    values.update(overrides)
    return CostReport(**values)  # type: ignore[arg-type]


def value(name: str, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, {"namespace": NS, "deployment": NAME, **labels})


def test_series_names_labels_and_values() -> None:
    metrics.report_cost(NS, NAME, report())
    cost = {"accelerator": "L4", "capacity": "spot-preferred"}
    assert value("llmops_deployment_cost_dollars_per_hour", **cost) == 1.5
    assert value("llmops_deployment_budget_dollars_per_hour", **cost) == 5.0
    assert value("llmops_deployment_cost_per_million_tokens", **cost) == 0.42
    states = {"desired": 3, "current": 2, "ready": 1, "starting": 1}
    for state, count in states.items():
        assert value("llmops_deployment_replicas", **cost, state=state) == count
    assert value("llmops_autoscaler_decisions_total", direction="up") == 1
    assert value("llmops_autoscaler_limited", limit="budget") == 1
    assert value("llmops_autoscaler_limited", limit="max") == 0
    assert value("llmops_autoscaler_scrape_failures_total") == 2

    # A fallback moves the series to the new accelerator; no token flow drops the token cost.
    metrics.report_cost(
        NS, NAME, report(accelerator="A10G", dollars_per_million_tokens=None, direction=-1)
    )
    assert value("llmops_deployment_cost_dollars_per_hour", **cost) is None
    assert value("llmops_deployment_replicas", **cost, state="ready") is None
    moved = {"accelerator": "A10G", "capacity": "spot-preferred"}
    assert value("llmops_deployment_cost_dollars_per_hour", **moved) == 1.5
    assert value("llmops_deployment_cost_per_million_tokens", **moved) is None
    assert value("llmops_autoscaler_decisions_total", direction="down") == 1
    assert value("llmops_autoscaler_scrape_failures_total") == 4

    # Modes other than builtin do not evaluate the limits; no budget, no budget series.
    metrics.report_cost(
        NS, NAME, report(accelerator="A10G", budget_limited=None, max_limited=None,
                         budget_dollars_per_hour=None)
    )  # fmt: skip
    assert value("llmops_autoscaler_limited", limit="budget") is None
    assert value("llmops_deployment_budget_dollars_per_hour", **moved) is None

    metrics.forget(NS, NAME)
    for sample in metrics.REGISTRY.collect():
        for s in sample.samples:
            assert not (s.labels.get("namespace") == NS and s.labels.get("deployment") == NAME), s


def test_counters_exist_at_zero_before_the_first_decision() -> None:
    """Prometheus' increase() needs a sample before the first increment: a counter born at 1
    would hide the deployment's first scaling decision from the dashboard panel."""
    metrics.report_cost(NS, NAME, report(direction=0, scrape_failures=0))
    assert value("llmops_autoscaler_decisions_total", direction="up") == 0
    assert value("llmops_autoscaler_decisions_total", direction="down") == 0
    assert value("llmops_autoscaler_scrape_failures_total") == 0
    metrics.report_cost(NS, NAME, report(direction=1, scrape_failures=0))
    assert value("llmops_autoscaler_decisions_total", direction="up") == 1
    assert value("llmops_autoscaler_decisions_total", direction="down") == 0
    metrics.forget(NS, NAME)
