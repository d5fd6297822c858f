"""Observe -> decide: one pure function from an LLMDeployment and what exists to a Plan.

`decide(manifest, observed, now, settings)` returns the objects to apply and delete, the status
to write (None when unchanged), the Events to emit and when to look again. Only the executor
(llm_operator.k8s) acts on a Plan. No kopf, kubernetes or prometheus_client here.
"""

from llm_operator.plan.conditions import set_condition
from llm_operator.plan.decide import decide
from llm_operator.plan.fallback import FallbackSettings, FallbackStep, step_fallback
from llm_operator.plan.observed import ChildSummary, DeploymentState, Observed, PodSummary
from llm_operator.plan.types import ChildRef, EventSpec, Plan, ReconcileSettings

__all__ = [
    "ChildRef",
    "ChildSummary",
    "DeploymentState",
    "EventSpec",
    "FallbackSettings",
    "FallbackStep",
    "Observed",
    "Plan",
    "PodSummary",
    "ReconcileSettings",
    "decide",
    "set_condition",
    "step_fallback",
]
