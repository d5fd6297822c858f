"""What crosses the decide -> act boundary: plain frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from llm_operator.catalog import Catalog, default_catalog
from llm_operator.plan.fallback import FallbackSettings
from llm_operator.plan.observed import ScalingMemory
from llm_operator.render.settings import RenderSettings

FIELD_MANAGER = "llm-operator"


@dataclass(frozen=True)
class ReconcileSettings:
    """Operator-wide settings the decision depends on; frozen after start-up."""

    catalog: Catalog = field(default_factory=default_catalog)
    render: RenderSettings = field(default_factory=RenderSettings)
    fallback: FallbackSettings = field(default_factory=FallbackSettings)
    gateway_url: str | None = None  # llm-gateway's OpenAI base URL: status.gatewayEndpoint


@dataclass(frozen=True)
class ChildRef:
    api_version: str
    kind: str
    name: str
    namespace: str | None


@dataclass(frozen=True)
class EventSpec:
    """A Kubernetes Event about the LLMDeployment (core/v1 Event: type, reason, message)."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class PlanError:
    """The spec cannot be acted on until it changes: a permanent error, never retried."""

    reason: str
    message: str


@dataclass(frozen=True)
class CostReport:
    """The figures of the operator's llmops_* series for one LLMDeployment (metrics.py)."""

    accelerator: str  # the resolved option's catalog name
    capacity: str  # spec.accelerator.capacity: on-demand, spot, spot-preferred
    dollars_per_hour: float  # pods that exist x $/h per replica
    budget_dollars_per_hour: float | None
    dollars_per_million_tokens: float | None  # None: no tokens generated in the last interval
    desired: int
    current: int  # pods that exist (billed, starting ones included)
    ready: int
    starting: int
    budget_limited: bool | None = None  # None: not evaluated in this mode
    max_limited: bool | None = None
    direction: int = 0  # this reconcile's autoscaler decision: 1 up, -1 down, 0 none
    scrape_failures: int = 0  # pods that did not answer this reconcile's scrape


@dataclass(frozen=True)
class Plan:
    apply: tuple[dict[str, Any], ...] = ()  # full manifests, server-side applied
    delete: tuple[ChildRef, ...] = ()  # children that should no longer exist
    status: dict[str, Any] | None = None  # the whole new status; None = unchanged
    status_patch: dict[str, Any] | None = None  # merge patch old -> new (None deletes a key)
    events: tuple[EventSpec, ...] = ()
    requeue_after: float | None = None  # seconds until something time-based is due
    error: PlanError | None = None
    replicas: int = 0  # for the per-deployment gauges
    ready_replicas: int = 0
    desired_replicas: int = 0
    report: CostReport | None = None  # None when the spec could not be acted on
    memory: ScalingMemory | None = None  # the autoscaler's new memory; None = unchanged
    cold_starts: tuple[float, ...] = ()  # seconds of pods measured for the first time

    @property
    def writes(self) -> int:
        """API writes acting on this plan takes (status counts once)."""
        return len(self.apply) + len(self.delete) + len(self.events) + (self.status is not None)
