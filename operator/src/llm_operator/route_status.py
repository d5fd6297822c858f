"""An LLMRoute's status from what the operator sees. Pure: no API calls, `now` passed in.

Inputs: the route, the LLMDeployments of its namespace (as `DeploymentView`s, read from their
status: the operator's own figures, one owner), the last hour of the gateway's counters (None
without --gateway-service) and the status written before (for lastTransitionTime).
Conditions: Ready (every named deployment exists and at least one has ready replicas) and
ShadowsModel (another LLMDeployment of the namespace serves the route's model name: the route
wins in the gateway).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from llm_operator.api.route import (
    READY,
    SHADOWS_MODEL,
    LastHour,
    LLMRoute,
    LLMRouteStatus,
    RouteTargetStatus,
    TargetRole,
)
from llm_operator.api.status import BUDGET_LIMITED, Condition
from llm_operator.plan.timefmt import format_time

# Reasons of the route's conditions.
TARGETS_READY = "TargetsReady"
MISSING_DEPLOYMENTS = "MissingDeployments"
NO_READY_REPLICAS = "NoReadyReplicas"
SERVED_MODEL_SHADOWED = "ServedModelShadowed"
NO_SHADOWED_MODEL = "NoServedModelOfThatName"


@dataclass(frozen=True)
class DeploymentView:
    """What a route needs of one LLMDeployment, read from its manifest."""

    name: str
    served_model: str | None = None
    ready_replicas: int = 0
    budget_limited: bool = False
    dollars_per_million_tokens: float | None = None

    @classmethod
    def from_manifest(cls, body: Mapping[str, Any]) -> DeploymentView:
        status = body.get("status") or {}
        conditions = status.get("conditions") or []
        limited = any(c.get("type") == BUDGET_LIMITED and c.get("status") == "True"
                      for c in conditions)  # fmt: skip
        price = (status.get("cost") or {}).get("dollarsPerMillionTokens")
        served = status.get("servedModel") or ((body.get("spec") or {}).get("model") or {}).get(
            "servedName"
        )
        return cls(
            name=str(body["metadata"]["name"]),
            served_model=served,
            ready_replicas=int(status.get("readyReplicas") or 0),
            budget_limited=limited,
            dollars_per_million_tokens=float(price) if price is not None else None,
        )


def _targets(route: LLMRoute, deployments: Mapping[str, DeploymentView]) -> list[RouteTargetStatus]:
    spec = route.spec
    primary: TargetRole = "step" if spec.cascade is not None else "target"
    roles: list[tuple[str, TargetRole]] = [(d, primary) for d in spec.primary_deployments]
    roles += [(d, "fallback") for d in spec.fallback]
    out = []
    for name, role in roles:
        seen = deployments.get(name)
        out.append(
            RouteTargetStatus(
                deployment=name,
                role=role,
                exists=seen is not None,
                ready=seen is not None and seen.ready_replicas > 0,
                ready_replicas=seen.ready_replicas if seen else 0,
                budget_limited=seen.budget_limited if seen else False,
                dollars_per_million_tokens=seen.dollars_per_million_tokens if seen else None,
            )
        )
    return out


def _ready(targets: list[RouteTargetStatus]) -> tuple[str, str, str]:
    missing = [t.deployment for t in targets if not t.exists]
    if missing:
        return "False", MISSING_DEPLOYMENTS, f"no LLMDeployment {', '.join(missing)} here"
    ready = [t.deployment for t in targets if t.ready]
    if not ready:
        return (
            "False",
            NO_READY_REPLICAS,
            (
                "no target has a ready replica "
                "(the gateway holds requests while one scales from zero)"
            ),
        )
    return "True", TARGETS_READY, f"ready: {', '.join(ready)}"


def _shadows(route: LLMRoute, deployments: Mapping[str, DeploymentView]) -> tuple[str, str, str]:
    shadowed = sorted(d.name for d in deployments.values() if d.served_model == route.spec.model)
    if shadowed:
        return (
            "True",
            SERVED_MODEL_SHADOWED,
            (
                f"{', '.join(shadowed)} also serve{'s' if len(shadowed) == 1 else ''} model "
                f"{route.spec.model!r}; requests for it take this route"
            ),
        )
    return "False", NO_SHADOWED_MODEL, f"no LLMDeployment here serves {route.spec.model!r}"


def _condition(
    kind: str,
    verdict: tuple[str, str, str],
    previous: Mapping[str, Mapping[str, Any]],
    generation: int | None,
    now: datetime,
) -> Condition:
    status, reason, message = verdict
    before = previous.get(kind) or {}
    since = before.get("lastTransitionTime") if before.get("status") == status else None
    return Condition(
        type=kind,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since or format_time(now),
        observed_generation=generation,
    )


def route_status(
    route: LLMRoute,
    deployments: Mapping[str, DeploymentView],
    last_hour: LastHour | None,
    previous: Mapping[str, Any] | None,
    now: datetime,
) -> dict[str, Any]:
    """The whole status to write, camelCase as stored."""
    generation = route.metadata.generation
    before = {c.get("type", ""): c for c in (previous or {}).get("conditions") or []}
    targets = _targets(route, deployments)
    status = LLMRouteStatus(
        observed_generation=generation,
        conditions=[
            _condition(READY, _ready(targets), before, generation, now),
            _condition(SHADOWS_MODEL, _shadows(route, deployments), before, generation, now),
        ],
        targets=targets,
        last_hour=last_hour,
    )
    written: dict[str, Any] = status.model_dump(by_alias=True, exclude_none=True, mode="json")
    return written


def status_patch(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any] | None:
    """A JSON merge patch turning `old` into `new` (top-level keys), or None when equal."""
    old = old or {}
    if dict(old) == dict(new):
        return None
    return {**{k: None for k in old if k not in new}, **new}
