from __future__ import annotations

import pytest

from llm_operator.catalog import default_catalog
from llm_operator.cost import (
    budget_use,
    current_dollars_per_hour,
    dollars_per_million_tokens,
    replica_dollars_per_hour,
)


@pytest.mark.parametrize(
    ("replicas", "per_replica", "expected"),
    [(0, 0.71, 0.0), (1, 0.71, 0.71), (3, 1.10, 3.30), (-1, 0.71, 0.0)],
)
def test_current_dollars_per_hour(replicas: int, per_replica: float, expected: float) -> None:
    assert current_dollars_per_hour(replicas, per_replica) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("dollars_per_hour", "tokens_per_second", "expected"),
    [
        (3.6, 1000.0, 1.0),  # 3.6M tokens/h for $3.60
        (0.71, 100.0, 0.71 / 0.36),
        (2.0, 0.0, None),  # nothing generated: undefined, not infinite
        (2.0, -1.0, None),
        (0.0, 50.0, 0.0),
    ],
)
def test_dollars_per_million_tokens(
    dollars_per_hour: float, tokens_per_second: float, expected: float | None
) -> None:
    got = dollars_per_million_tokens(dollars_per_hour, tokens_per_second)
    assert got == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize(
    ("dollars_per_hour", "budget", "expected"),
    [(2.5, 5.0, 0.5), (5.0, 5.0, 1.0), (6.0, 5.0, 1.2), (1.0, None, None), (1.0, 0.0, None)],
)
def test_budget_use(dollars_per_hour: float, budget: float | None, expected: float | None) -> None:
    got = budget_use(dollars_per_hour, budget)
    assert got == (None if expected is None else pytest.approx(expected))


def test_figures_compose_with_the_catalog_price() -> None:
    per_replica = replica_dollars_per_hour(default_catalog(), "L4", 1, "on-demand")
    spend = current_dollars_per_hour(4, per_replica)
    assert budget_use(spend, 4 * per_replica) == pytest.approx(1.0)
    per_million = dollars_per_million_tokens(spend, 1000.0)
    assert per_million is not None
    assert per_million == pytest.approx(spend / 3.6)
