from __future__ import annotations

import pytest

from llm_operator.catalog import default_catalog

PROMISED = ["T4", "L4", "A10G", "L40S", "A100-40GB", "A100-80GB", "H100-80GB", "H200", "cpu"]


def test_catalog_has_every_promised_accelerator() -> None:
    assert default_catalog().names() == PROMISED


@pytest.mark.parametrize("name", PROMISED)
def test_each_entry_is_priced_with_a_source(name: str) -> None:
    entry = default_catalog().get(name)
    assert entry is not None
    assert 0 < entry.prices.spot < entry.prices.on_demand
    assert entry.prices.source and entry.prices.as_of
    if name != "cpu":
        assert entry.resource_name == "nvidia.com/gpu"
        assert entry.memory_gib > 10 and entry.product_labels


def test_fp8_exactly_where_compute_capability_allows() -> None:
    for entry in default_catalog().accelerators:
        if entry.is_cpu:
            assert not entry.fp8
            continue
        major, minor = (int(x) for x in entry.compute_capability.split("."))
        assert entry.fp8 == ((major, minor) >= (8, 9)), entry.name


def test_configmap_override_reprices_and_extends_by_name() -> None:
    catalog = default_catalog().with_overrides(
        """
accelerators:
  - name: L4
    prices: {onDemand: 0.5, spot: 0.2}
"""
    )
    l4 = catalog.get("L4")
    assert l4 is not None and l4.prices.on_demand == 0.5 and l4.prices.spot == 0.2
    assert l4.prices.source == default_catalog().get("L4").prices.source  # type: ignore[union-attr]
    assert l4.memory_gib == default_catalog().get("L4").memory_gib  # type: ignore[union-attr]
    assert catalog.names() == default_catalog().names()


def test_override_with_bad_price_is_refused() -> None:
    with pytest.raises(ValueError, match="onDemand"):
        default_catalog().with_overrides("accelerators: [{name: T4, prices: {onDemand: -1}}]")
