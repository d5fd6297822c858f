"""What the operator observed, as plain data: children, pods, and the Deployment's rollout.

The shell (llm_operator.k8s) builds these from watch events; `summarize_child` and
`summarize_pod` are pure so the same parsing is unit-tested and used by the operator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from llm_operator.autoscale.policy import PolicyState
from llm_operator.autoscale.signals import PodSignals
from llm_operator.autoscale.tokens import TokenMeter
from llm_operator.plan.timefmt import parse_time
from llm_operator.render.objects import CONTAINER, OPTION_LABEL

APPLIED_HASH_ANNOTATION = "inference.llmops.dev/applied-hash"
UNSCHEDULABLE_REASONS = frozenset({"Unschedulable", "FailedScheduling"})


@dataclass(frozen=True)
class DeploymentState:
    """The parts of a Deployment's spec and status that say how its rollout stands."""

    spec_replicas: int | None = None
    replicas: int = 0
    ready_replicas: int = 0
    updated_replicas: int | None = None
    generation: int | None = None
    observed_generation: int | None = None

    def rolled_out(self, desired: int) -> bool:
        """The controller saw the latest spec and `desired` up-to-date pods are ready."""
        if (
            self.generation is not None
            and self.observed_generation is not None
            and self.observed_generation < self.generation
        ):
            return False
        if self.updated_replicas is not None and self.updated_replicas < desired:
            return False
        return self.ready_replicas >= desired


@dataclass(frozen=True)
class ChildSummary:
    """One existing child: identity plus the applied-hash annotation it was written with."""

    api_version: str
    kind: str
    name: str
    applied_hash: str | None = None
    deployment: DeploymentState | None = None  # only for the Deployment


@dataclass(frozen=True)
class PodSummary:
    name: str
    option: str | None  # accelerator-option label: primary, fallback-0, ...
    phase: str = "Pending"
    ready: bool = False
    unschedulable_since: datetime | None = None  # PodScheduled=False (Unschedulable) since
    unschedulable_message: str | None = None  # the scheduler's message: why it cannot place it
    deleting: bool = False
    ip: str | None = None  # status.podIP: where the autoscaler scrapes /metrics
    port: int | None = None  # the llm-server container's port named `http`
    created: datetime | None = None  # metadata.creationTimestamp
    ready_since: datetime | None = None  # the Ready=True condition's lastTransitionTime
    restarts: int = 0  # container restarts: a restarted pod's Ready time is no cold start

    @property
    def starting(self) -> bool:
        """Created, not ready, not going away: capacity on its way (it bills already)."""
        return not self.ready and not self.deleting

    @property
    def loading(self) -> bool:
        """Starting and not refused by the scheduler: pulling the image or loading weights.
        A scale-down would kill it first (the Deployment controller removes unready pods
        first), wasting the load, so the autoscaler holds scale-down while one loads (within
        the startup probe's budget: plan.scaling)."""
        return self.starting and self.unschedulable_since is None

    @property
    def cold_start_seconds(self) -> float | None:
        """Created -> Ready, for a ready pod that never restarted."""
        if not self.ready or self.restarts or self.created is None or self.ready_since is None:
            return None
        return max(0.0, (self.ready_since - self.created).total_seconds())


@dataclass(frozen=True)
class Scrape:
    """One tick of the signal collector: a PodSignals per ready pod, at `at` (monotonic s)."""

    pods: tuple[PodSignals, ...]
    at: float


@dataclass(frozen=True)
class ScalingMemory:
    """What the autoscaler remembers between ticks; in the operator's memory only (a restarted
    operator starts with empty windows and token readings)."""

    policy: PolicyState = field(default_factory=PolicyState)
    tokens: TokenMeter = field(default_factory=TokenMeter)


@dataclass(frozen=True)
class Observed:
    children: Mapping[tuple[str, str], ChildSummary] = field(default_factory=dict)  # (kind, name)
    pods: tuple[PodSummary, ...] = ()
    scrape: Scrape | None = None  # set when the collector scraped for this reconcile
    memory: ScalingMemory = field(default_factory=ScalingMemory)

    @classmethod
    def of(cls, children: list[ChildSummary], pods: list[PodSummary]) -> Observed:
        return cls({(c.kind, c.name): c for c in children}, tuple(sorted(pods, key=_pod_key)))


def _pod_key(pod: PodSummary) -> str:
    return pod.name


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def summarize_child(body: Mapping[str, Any]) -> ChildSummary:
    meta = body.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    deployment = None
    if body.get("kind") == "Deployment":
        spec, status = body.get("spec") or {}, body.get("status") or {}
        deployment = DeploymentState(
            spec_replicas=_int(spec.get("replicas")),
            replicas=_int(status.get("replicas")) or 0,
            ready_replicas=_int(status.get("readyReplicas")) or 0,
            updated_replicas=_int(status.get("updatedReplicas")),
            generation=_int(meta.get("generation")),
            observed_generation=_int(status.get("observedGeneration")),
        )
    return ChildSummary(
        api_version=str(body.get("apiVersion", "")),
        kind=str(body.get("kind", "")),
        name=str(meta.get("name", "")),
        applied_hash=annotations.get(APPLIED_HASH_ANNOTATION),
        deployment=deployment,
    )


def summarize_pod(body: Mapping[str, Any]) -> PodSummary:
    meta, status = body.get("metadata") or {}, body.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if isinstance(c, dict)}
    scheduled, ready = conditions.get("PodScheduled") or {}, conditions.get("Ready") or {}
    unschedulable = (
        scheduled.get("status") == "False" and scheduled.get("reason") in UNSCHEDULABLE_REASONS
    )
    return PodSummary(
        name=str(meta.get("name", "")),
        option=(meta.get("labels") or {}).get(OPTION_LABEL),
        phase=str(status.get("phase") or "Pending"),
        ready=ready.get("status") == "True",
        unschedulable_since=parse_time(scheduled.get("lastTransitionTime"))
        if unschedulable
        else None,
        unschedulable_message=str(scheduled.get("message") or "") if unschedulable else None,
        deleting=bool(meta.get("deletionTimestamp")),
        ip=str(status["podIP"]) if status.get("podIP") else None,
        port=_http_port(body.get("spec") or {}),
        created=parse_time(meta.get("creationTimestamp")),
        ready_since=parse_time(ready.get("lastTransitionTime"))
        if ready.get("status") == "True"
        else None,
        restarts=sum(
            _int(c.get("restartCount")) or 0
            for c in status.get("containerStatuses") or []
            if isinstance(c, dict)
        ),
    )


def _http_port(pod_spec: Mapping[str, Any]) -> int | None:
    """The `http` port of the llm-server container (of any container if renamed by a patch)."""
    containers = [c for c in pod_spec.get("containers") or [] if isinstance(c, dict)]
    containers.sort(key=lambda c: c.get("name") != CONTAINER)
    for container in containers:
        for port in container.get("ports") or []:
            if isinstance(port, dict) and port.get("name") == "http":
                return _int(port.get("containerPort"))
    return None
