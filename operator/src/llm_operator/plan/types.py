"""What crosses the decide -> act boundary: plain frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from llm_operator.catalog import Catalog, default_catalog
from llm_operator.plan.fallback import FallbackSettings
from llm_operator.render.settings import RenderSettings

FIELD_MANAGER = "llm-operator"


@dataclass(frozen=True)
class ReconcileSettings:
    """Operator-wide settings the decision depends on; frozen after start-up."""

    catalog: Catalog = field(default_factory=default_catalog)
    render: RenderSettings = field(default_factory=RenderSettings)
    fallback: FallbackSettings = field(default_factory=FallbackSettings)


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

    @property
    def writes(self) -> int:
        """API writes acting on this plan takes (status counts once)."""
        return len(self.apply) + len(self.delete) + len(self.events) + (self.status is not None)
