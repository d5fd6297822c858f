"""The replica target: how many pods one LLMDeployment asks for. Pure.

The one owner of that count (house rule 11): `plan.decide` computes it once per reconcile
and hands it to the GPU-fallback step, the autoscaler step (the count held between decisions)
and rendering; `llmops render` renders the same number. The autoscaler policy then moves
from it within the same bounds (`PolicyConfig.from_spec`: the same min, max and budget, and
the same `demand_floor` while llm-gateway holds requests for a deployment at zero).
"""

from __future__ import annotations

from datetime import datetime

from llm_operator.api.demand import DEMAND_REFRESH_SECONDS
from llm_operator.api.spec import LLMDeploymentSpec
from llm_operator.cost import budget_capped_max

# A demand stamp counts this long at least, whatever the scale-down window: the gateway
# refreshes it every DEMAND_REFRESH_SECONDS while it holds requests, so a fresher stamp always
# follows while requests wait.
MIN_DEMAND_SECONDS = 3 * DEMAND_REFRESH_SECONDS
# Clock skew tolerated between the gateway and the operator; a stamp further in the future (a
# hand edit) is ignored rather than pinning a replica until then.
DEMAND_SKEW_SECONDS = 60.0


def demand_floor(spec: LLMDeploymentSpec, demand: datetime | None, now: datetime) -> int:
    """The replicas the gateway's held requests ask for: 1 while its demand stamp
    (api.demand) is newer than the scale-down window, else 0. builtin mode only (keda and
    none do not scale on it); at or above 1 replica it only delays the return to zero."""
    if spec.autoscaling.mode != "builtin" or demand is None:
        return 0
    age = (now - demand).total_seconds()
    window = max(spec.autoscaling.scale_down_stabilization_seconds, MIN_DEMAND_SECONDS)
    return 1 if -DEMAND_SKEW_SECONDS <= age < window else 0


def clamp(spec: LLMDeploymentSpec, count: int, per_replica: float, floor: int = 0) -> int:
    """`count` within [max(replicas.min, floor), replicas.max], then within what the budget
    pays for at `per_replica` $/h: the budget is the hard ceiling and wins over both floors."""
    return min(max(count, spec.replicas.min, floor), budget_capped_max(spec, per_replica))


def replica_target(
    spec: LLMDeploymentSpec,
    per_replica: float,
    last_decision: int | None = None,
    floor: int = 0,
) -> int:
    """The count Deployment.spec.replicas holds before this reconcile's autoscaler decision.

    builtin: the autoscaler's last decision (status.desiredReplicas), replicas.min before the
    first; none: replicas.desired; keda: replicas.min (the ScaledObject's floor: its HPA owns
    the count above it). Always clamped by `clamp` at the option's price `per_replica`, with
    `floor` (demand_floor) raising the minimum: a fresh demand stamp scales 0 -> 1 at once,
    no stabilization window (requests are waiting).
    """
    mode = spec.autoscaling.mode
    if mode == "none":
        count = spec.replicas.desired
    elif mode == "builtin" and last_decision is not None:
        count = last_decision
    else:
        count = spec.replicas.min
    return clamp(spec, count, per_replica, floor)
