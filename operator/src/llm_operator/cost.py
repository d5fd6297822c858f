"""Cost model: dollars per hour of an LLMDeployment, per accelerator option, against its budget.

One function prices a replica; everything else (llmops cost, the operator's status and
/metrics, the autoscaler's budget clamp, the KEDA ScaledObject's maxReplicaCount) builds on it,
so every figure a user sees comes from the same arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from llm_operator.api.spec import LLMDeploymentSpec
from llm_operator.catalog import Accelerator, Capacity, Catalog


@dataclass(frozen=True)
class OptionCost:
    """What one accelerator option (the primary or a fallback) costs."""

    label: str  # "primary" or "fallback 1" ...
    accelerator: str
    count: int
    capacity: Capacity
    dollars_per_replica_hour: float  # at the capacity's price (spot-preferred: spot)
    on_demand_dollars_per_replica_hour: float  # worst case when spot is not to be had
    at_min: float
    at_max: float
    affordable_replicas: int | None  # what the budget pays for; None without a budget
    budget_capped_max: int  # max replicas after the budget clamp


def replica_dollars_per_hour(
    catalog: Catalog, accelerator: str, count: int, capacity: Capacity
) -> float:
    entry = catalog.get(accelerator)
    if entry is None:
        raise KeyError(f"accelerator {accelerator!r} is not in the catalog")
    return entry_dollars_per_hour(entry, count, capacity)


def entry_dollars_per_hour(entry: Accelerator, count: int, capacity: Capacity) -> float:
    """$/h of one replica on `count` of a catalog entry (the resolved option of a spec)."""
    return entry.dollars_per_hour(capacity) * count


def affordable_replicas(budget: float, per_replica: float) -> int:
    # A small epsilon keeps 3 x $1.10 within a $3.30 budget despite float rounding.
    return math.floor(budget / per_replica + 1e-9)


def budget_capped_max(spec: LLMDeploymentSpec, per_replica: float) -> int:
    """replicas.max, lowered to what the budget pays for (the budget wins over min too)."""
    budget = spec.autoscaling.budget
    if budget is None or per_replica <= 0:
        return spec.replicas.max
    return min(spec.replicas.max, affordable_replicas(budget.max_dollars_per_hour, per_replica))


def estimate(spec: LLMDeploymentSpec, catalog: Catalog) -> list[OptionCost]:
    """Cost of the primary accelerator and of each fallback, in order."""
    capacity = spec.accelerator.capacity
    options = [("primary", spec.accelerator.type, spec.accelerator.count)]
    options += [
        (f"fallback {i}", f.type, f.count) for i, f in enumerate(spec.accelerator.fallbacks, 1)
    ]
    budget = spec.autoscaling.budget.max_dollars_per_hour if spec.autoscaling.budget else None
    out = []
    for label, accelerator, count in options:
        per_replica = replica_dollars_per_hour(catalog, accelerator, count, capacity)
        affordable = affordable_replicas(budget, per_replica) if budget is not None else None
        capped = budget_capped_max(spec, per_replica)
        out.append(
            OptionCost(
                label=label,
                accelerator=accelerator,
                count=count,
                capacity=capacity,
                dollars_per_replica_hour=per_replica,
                on_demand_dollars_per_replica_hour=replica_dollars_per_hour(
                    catalog, accelerator, count, "on-demand"
                ),
                at_min=per_replica * spec.replicas.min,
                at_max=per_replica * spec.replicas.max,
                affordable_replicas=affordable,
                budget_capped_max=capped,
            )
        )
    return out


def budget_warnings(spec: LLMDeploymentSpec, catalog: Catalog) -> list[str]:
    """Valid but probably unintended: the budget cannot pay for replicas.min on some option."""
    if spec.autoscaling.budget is None:
        return []
    budget = spec.autoscaling.budget.max_dollars_per_hour
    return [
        f"spec.autoscaling.budget.maxDollarsPerHour: ${budget:.2f}/h pays for "
        f"{o.affordable_replicas} replica(s) of {o.count}x {o.accelerator} ({o.label}, "
        f"${o.dollars_per_replica_hour:.2f}/h each), fewer than replicas.min="
        f"{spec.replicas.min}; the budget caps the replicas there and the deployment reports "
        "BudgetLimited (fix: raise the budget or lower replicas.min)"
        for o in estimate(spec, catalog)
        if o.affordable_replicas is not None and o.affordable_replicas < spec.replicas.min
    ]


# --- running figures (the operator's cost metrics and status.cost) ---------------------------


def current_dollars_per_hour(replicas: int, per_replica: float) -> float:
    """$/h of the replicas that exist now (starting pods hold their GPU too)."""
    return max(replicas, 0) * per_replica


def dollars_per_million_tokens(dollars_per_hour: float, tokens_per_second: float) -> float | None:
    """What a million generated tokens cost at this spend and generation rate.

    None when nothing is being generated: the figure is undefined, not infinite.
    """
    if tokens_per_second <= 0:
        return None
    return dollars_per_hour / (tokens_per_second * 3600) * 1_000_000


def budget_use(dollars_per_hour: float, budget: float | None) -> float | None:
    """Spend as a fraction of the budget (1.0 = all of it); None without a budget."""
    if budget is None or budget <= 0:
        return None
    return dollars_per_hour / budget
