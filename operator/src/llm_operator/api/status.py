"""LLMDeployment status: what the operator observed and decided.

Conditions follow the standard Kubernetes shape (metav1.Condition). Reasons used across the
project are constants here so handlers, tests and docs agree on spelling.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from llm_operator.api.base import ApiModel

Phase = Literal["Pending", "Progressing", "Ready", "Degraded", "Failed"]
ConditionStatus = Literal["True", "False", "Unknown"]

# Condition types.
READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
FALLBACK_ACTIVE = "FallbackActive"
BUDGET_LIMITED = "BudgetLimited"
SCALING_LIMITED = "ScalingLimited"

# Reasons.
INSUFFICIENT_GPU_MEMORY = "InsufficientGPUMemory"
INVALID_SPEC = "InvalidSpec"
UNSCHEDULABLE = "Unschedulable"
BUDGET_EXCEEDED = "BudgetExceeded"


class Condition(ApiModel):
    """metav1.Condition."""

    type: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9]*$", max_length=316)
    status: ConditionStatus
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", max_length=1024)
    message: str = Field(default="", max_length=32768)
    last_transition_time: str = Field(json_schema_extra={"format": "date-time"})
    observed_generation: int | None = Field(default=None, ge=0)


class ResolvedAccelerator(ApiModel):
    """The accelerator the pods actually run on (primary, or the active fallback)."""

    type: str
    count: int = Field(ge=1)
    capacity: str
    fallback_index: int | None = Field(
        default=None, ge=0, description="Index in spec.accelerator.fallbacks; unset = primary."
    )


class Cost(ApiModel):
    dollars_per_hour: float | None = Field(default=None, ge=0)
    dollars_per_million_tokens: float | None = Field(default=None, ge=0)
    budget_dollars_per_hour: float | None = Field(default=None, ge=0)


class ScalingDecision(ApiModel):
    """The autoscaler's last change of desired replicas, and why."""

    time: str = Field(json_schema_extra={"format": "date-time"})
    from_replicas: int = Field(ge=0, alias="from")
    to_replicas: int = Field(ge=0, alias="to")
    reason: str


class LLMDeploymentStatus(ApiModel):
    observed_generation: int | None = Field(default=None, ge=0)
    phase: Phase | None = None
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    replicas: int | None = Field(default=None, ge=0, description="Pods that exist.")
    ready_replicas: int | None = Field(default=None, ge=0)
    desired_replicas: int | None = Field(default=None, ge=0)
    selector: str | None = Field(
        default=None, description="Label selector of the pods (for the scale subresource)."
    )
    accelerator: ResolvedAccelerator | None = None
    quantization: str | None = None
    endpoint: str | None = Field(default=None, description="OpenAI base URL inside the cluster.")
    cost: Cost | None = None
    last_scaling: ScalingDecision | None = None
