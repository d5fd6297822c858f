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
REJECTED_BY_API = "RejectedByAPIServer"
SCHEDULING_FAILED = "SchedulingFailed"  # unschedulable for a reason no other GPU fixes
FORBIDDEN = "Forbidden"  # the operator's RBAC refused a request


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


class FallbackState(ApiModel):
    """Where the GPU fallback state machine stands (docs/operator.md, "GPU fallbacks")."""

    index: int | None = Field(
        default=None,
        ge=0,
        description="The option the pods target: a fallback index; unset = primary.",
    )
    since: str = Field(
        json_schema_extra={"format": "date-time"}, description="When that option was chosen."
    )
    options: str = Field(
        description="Digest of spec.accelerator the state belongs to; a change resets it."
    )
    probe_return_index: int | None = Field(
        default=None,
        ge=0,
        description="Set while the primary is being probed: the fallback to return to if it fails.",
    )
    failed_probes: int = Field(
        default=0, ge=0, description="Consecutive failed probes of the primary (backoff)."
    )
    next_primary_probe: str | None = Field(
        default=None,
        json_schema_extra={"format": "date-time"},
        description="When the primary is tried again (while on a fallback).",
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


class ColdStart(ApiModel):
    """Pod created -> Ready (weights pulled and loaded, server up) of the deployment's pods."""

    last_seconds: float = Field(ge=0, description="The most recent pod's.")
    median_seconds: float = Field(ge=0, description="Median of recentSeconds.")
    samples: int = Field(ge=1, description="Pods measured since the LLMDeployment was created.")
    recent_seconds: list[float] = Field(
        max_length=20, description="The most recent pods' cold starts, oldest first."
    )
    last_ready_time: str = Field(
        json_schema_extra={"format": "date-time"},
        description="When the most recent measured pod turned Ready (pods up to it are counted).",
    )
    last_pod: str = Field(description="That pod's name.")


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
    gateway_endpoint: str | None = Field(
        default=None,
        description="OpenAI base URL of llm-gateway (the operator's --gateway-url), routing to "
        "this deployment's pods by the request's model: send servedModel.",
    )
    served_model: str | None = Field(default=None, description="What clients send as `model`.")
    cold_start: ColdStart | None = None
    cost: Cost | None = None
    last_scaling: ScalingDecision | None = None
    fallback: FallbackState | None = None
