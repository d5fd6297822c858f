"""The replica target: how many pods one LLMDeployment asks for. Pure.

The one owner of that count (house rule 11): `plan.decide` computes it once per reconcile
and hands it to the GPU-fallback step, the autoscaler step (the count held between decisions)
and rendering; `llmops render` renders the same number. The autoscaler policy then moves
from it within the same bounds (`PolicyConfig.from_spec`: the same min, max and budget).
"""

from __future__ import annotations

from llm_operator.api.spec import LLMDeploymentSpec
from llm_operator.cost import budget_capped_max


def clamp(spec: LLMDeploymentSpec, count: int, per_replica: float) -> int:
    """`count` within [replicas.min, replicas.max], then within what the budget pays for at
    `per_replica` $/h: the budget is the hard ceiling and wins over replicas.min."""
    return min(max(count, spec.replicas.min), budget_capped_max(spec, per_replica))


def replica_target(
    spec: LLMDeploymentSpec, per_replica: float, last_decision: int | None = None
) -> int:
    """The count Deployment.spec.replicas holds before this reconcile's autoscaler decision.

    builtin: the autoscaler's last decision (status.desiredReplicas), replicas.min before the
    first; none: replicas.desired; keda: replicas.min (the ScaledObject's floor: its HPA owns
    the count above it). Always clamped by `clamp` at the option's price `per_replica`.
    """
    mode = spec.autoscaling.mode
    if mode == "none":
        count = spec.replicas.desired
    elif mode == "builtin" and last_decision is not None:
        count = last_decision
    else:
        count = spec.replicas.min
    return clamp(spec, count, per_replica)
