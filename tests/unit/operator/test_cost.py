from __future__ import annotations

from typing import Any

import pytest

from llm_operator.catalog import default_catalog
from llm_operator.cost import affordable_replicas, budget_warnings, estimate
from llm_operator.validation import validate_manifest


def _spec(manifest: dict[str, Any]) -> Any:
    resource, problems = validate_manifest(manifest)
    assert resource is not None, problems
    return resource.spec


def test_primary_and_fallbacks_are_priced_in_order(manifest: dict[str, Any]) -> None:
    catalog = default_catalog()
    options = estimate(_spec(manifest), catalog)
    assert [(o.label, o.accelerator) for o in options] == [
        ("primary", "L4"),
        ("fallback 1", "A10G"),
    ]
    l4 = catalog.get("L4")
    assert l4 is not None
    assert options[0].dollars_per_replica_hour == pytest.approx(l4.prices.on_demand)
    assert options[0].at_max == pytest.approx(4 * l4.prices.on_demand)


def test_tensor_parallel_count_multiplies_and_spot_uses_spot_price(
    manifest: dict[str, Any],
) -> None:
    manifest["spec"]["accelerator"] = {"type": "H100-80GB", "count": 4, "capacity": "spot"}
    h100 = default_catalog().get("H100-80GB")
    assert h100 is not None
    option = estimate(_spec(manifest), default_catalog())[0]
    assert option.dollars_per_replica_hour == pytest.approx(4 * h100.prices.spot)
    assert option.on_demand_dollars_per_replica_hour == pytest.approx(4 * h100.prices.on_demand)


def test_budget_caps_max_replicas(manifest: dict[str, Any]) -> None:
    catalog = default_catalog().with_overrides(
        "accelerators: [{name: L4, prices: {onDemand: 1.10, spot: 0.5}}]"
    )
    manifest["spec"]["replicas"] = {"min": 1, "max": 10}
    manifest["spec"]["autoscaling"]["budget"]["maxDollarsPerHour"] = 3.30
    primary = estimate(_spec(manifest), catalog)[0]
    assert primary.affordable_replicas == 3  # 3 x 1.10 = 3.30 exactly: not lost to rounding
    assert primary.budget_capped_max == 3


def test_budget_below_min_warns_with_a_fix(manifest: dict[str, Any]) -> None:
    manifest["spec"]["replicas"] = {"min": 3, "max": 4}
    manifest["spec"]["autoscaling"]["budget"]["maxDollarsPerHour"] = 1.0
    warnings = budget_warnings(_spec(manifest), default_catalog())
    assert warnings and all("fix:" in w and "replicas.min=3" in w for w in warnings)
    manifest["spec"]["autoscaling"]["budget"]["maxDollarsPerHour"] = 100.0
    assert budget_warnings(_spec(manifest), default_catalog()) == []


def test_affordable_replicas_rounds_down() -> None:
    assert affordable_replicas(10.0, 3.0) == 3
    assert affordable_replicas(2.99, 3.0) == 0
