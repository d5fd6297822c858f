"""decide(): one LLMDeployment plus what was observed -> the Plan. Pure (house rule 2).

Order of business: validate the spec (a bad one is a permanent error: Degraded + Event, the
last good children keep running); step the GPU-fallback state machine on the observed pods;
resolve the active option; render the children and keep only those that changed; compute
conditions and phase; emit Events on transitions only; write the status only when it changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from llm_operator.api.demand import DEMAND_ANNOTATION, parse_demand_stamp
from llm_operator.api.resource import LLMDeployment
from llm_operator.api.spec import LLMDeploymentSpec
from llm_operator.api.status import (
    DEGRADED,
    FALLBACK_ACTIVE,
    INVALID_SPEC,
    PROGRESSING,
    READY,
    SCHEDULING_FAILED,
    UNSCHEDULABLE,
    Condition,
    ConditionStatus,
    LLMDeploymentStatus,
    Phase,
    ResolvedAccelerator,
)
from llm_operator.catalog import Catalog
from llm_operator.cost import replica_dollars_per_hour
from llm_operator.plan import children
from llm_operator.plan.cold_start import measure_cold_starts
from llm_operator.plan.conditions import find, set_condition, transitioned
from llm_operator.plan.fallback import FallbackStep, describe, step_fallback
from llm_operator.plan.observed import DeploymentState, Observed
from llm_operator.plan.scaling import plan_scaling
from llm_operator.plan.status import merge_patch, parse_status, status_dict
from llm_operator.plan.types import EventSpec, Plan, PlanError, ReconcileSettings
from llm_operator.render import desired_objects, selector_labels
from llm_operator.render.names import child_name
from llm_operator.render.policy import POLICY_VIOLATION, api_key_secret_name, objects_violations
from llm_operator.replicas import demand_floor, replica_target
from llm_operator.resolve import resolve
from llm_operator.validation import validate_manifest

AS_EXPECTED = "AsExpected"


def _price(spec: LLMDeploymentSpec, catalog: Catalog, index: int | None) -> float:
    """$/h of one replica of accelerator option `index` (None: the primary)."""
    option = spec.accelerator if index is None else spec.accelerator.fallbacks[index]
    return replica_dollars_per_hour(catalog, option.type, option.count, spec.accelerator.capacity)


def _resolved_manifest(manifest: Mapping[str, Any]) -> dict[str, Any]:
    return {k: manifest[k] for k in ("apiVersion", "kind", "metadata", "spec") if k in manifest}


def decide(
    manifest: Mapping[str, Any], observed: Observed, now: datetime, settings: ReconcileSettings
) -> Plan:
    generation = (manifest.get("metadata") or {}).get("generation")
    raw_previous = manifest.get("status") if isinstance(manifest.get("status"), dict) else {}
    previous = parse_status(raw_previous)
    resource, problems = validate_manifest(_resolved_manifest(manifest))
    if resource is None:
        message = "; ".join(str(p) for p in problems)
        return _failed(raw_previous or {}, previous, INVALID_SPEC, message, now, generation)
    spec = resource.spec
    last = previous.desired_replicas
    annotations = (manifest.get("metadata") or {}).get("annotations") or {}
    floor = demand_floor(spec, parse_demand_stamp(annotations.get(DEMAND_ANNOTATION)), now)
    try:
        # The fallback step counts ready pods against the target only while it probes the
        # primary, when the Deployment runs the primary: the target priced there (budget).
        primary = _price(spec, settings.catalog, None)
        on_primary = replica_target(spec, primary, last, floor)
        fallback = step_fallback(
            spec, previous.fallback, observed.pods, on_primary, now, settings.fallback
        )
        resolution = resolve(spec, settings.catalog, fallback.index)
    except KeyError as exc:  # the operator's catalog lacks a type the CRD allows
        return _failed(raw_previous or {}, previous, INVALID_SPEC, str(exc), now, generation)
    if not resolution.ok:
        problem = resolution.problems[0]
        message = "; ".join(p.message for p in resolution.problems)
        return _failed(raw_previous or {}, previous, problem.reason, message, now, generation)

    per_replica = replica_dollars_per_hour(
        settings.catalog, resolution.accelerator.name, resolution.count, resolution.capacity
    )
    # The one replica target (house rule 11): held by the autoscaler step between decisions,
    # rendered into the Deployment. Probing, the option is the primary: the fallback's count.
    target = (
        on_primary if fallback.index is None else replica_target(spec, per_replica, last, floor)
    )
    deployment_child = observed.children.get(("Deployment", child_name(resource.metadata.name)))
    deployment = deployment_child.deployment if deployment_child else None
    scaling = plan_scaling(
        spec,
        resolution,
        per_replica,
        target,
        previous,
        observed,
        deployment,
        now,
        generation,
        floor,
        settings.render.startup_timeout_seconds,
    )
    wanted = scaling.wanted
    rendered = desired_objects(resource, resolution, settings.render, scaling.replicas)
    # The pods' boundary, checked on what would be applied (after the podTemplate merge).
    violations = objects_violations(
        rendered,
        settings.render.pod_policy,
        settings.render.image_repository,
        api_key_secret_name(spec.server),
    )
    if violations:
        message = "; ".join(str(v) for v in violations)
        return _failed(raw_previous or {}, previous, POLICY_VIOLATION, message, now, generation)
    desired = [children.stamp(o) for o in rendered]
    to_apply = tuple(o for o in desired if children.needs_apply(o, observed.children))
    to_delete = tuple(children.stale(desired, observed.children, resource.metadata.namespace))
    # A new pod template (or a new Deployment) rolls out; a replica count alone only scales.
    rollout = any(
        o["kind"] == "Deployment" and children.changed(o, observed.children) for o in to_apply
    )

    cold_starts = measure_cold_starts(previous.cold_start, observed.pods)
    conditions = _conditions(
        scaling.conditions, spec, fallback, deployment, rollout, wanted, now, generation
    )
    status = LLMDeploymentStatus(
        observed_generation=generation,
        phase=_phase(conditions),
        conditions=list(conditions),
        replicas=deployment.replicas if deployment else 0,
        ready_replicas=deployment.ready_replicas if deployment else 0,
        desired_replicas=wanted,
        selector=",".join(f"{k}={v}" for k, v in selector_labels(resource.metadata.name).items()),
        accelerator=ResolvedAccelerator(
            type=resolution.accelerator.name,
            count=resolution.count,
            capacity=resolution.capacity,
            fallback_index=resolution.fallback_index,
        ),
        quantization=resolution.quantization,
        endpoint=_endpoint(resource, settings),
        gateway_endpoint=settings.gateway_url,
        served_model=spec.model.served_model_name,
        cold_start=cold_starts.status,
        cost=scaling.cost,
        last_scaling=scaling.last_scaling,
        fallback=fallback.state,
    )
    events = _events(previous.conditions, conditions, fallback, to_apply, to_delete, deployment)
    events += scaling.events
    new_status = status_dict(status)
    changed = new_status != raw_previous
    return Plan(
        apply=to_apply,
        delete=to_delete,
        status=new_status if changed else None,
        status_patch=merge_patch(raw_previous or {}, new_status) if changed else None,
        events=events,
        requeue_after=fallback.requeue_after,
        replicas=status.replicas or 0,
        ready_replicas=status.ready_replicas or 0,
        desired_replicas=wanted,
        report=scaling.report,
        memory=scaling.memory,
        cold_starts=cold_starts.measured,
    )


def _conditions(
    previous: Sequence[Condition],
    spec: LLMDeploymentSpec,
    fallback: FallbackStep,
    deployment: DeploymentState | None,
    rollout: bool,
    wanted: int,
    now: datetime,
    generation: int | None,
) -> tuple[Condition, ...]:
    """Ready: serving the current spec. It turns True once every desired pod of a new
    template is ready, then stays True through scaling while at least replicas.min (or 1)
    pods are ready: a scale-up's starting pods are capacity on its way, not an outage."""

    def put(
        conditions: tuple[Condition, ...], type_: str, on: bool, reason: str, message: str
    ) -> tuple[Condition, ...]:
        status: ConditionStatus = "True" if on else "False"
        return set_condition(conditions, type_, status, reason, message, now, generation)

    ready = 0 if deployment is None else deployment.ready_replicas
    rolled = deployment is not None and not rollout and deployment.rolled_out(wanted)
    # Ready was True and no new template came since (one sets Ready False until rolled out).
    was_ready = (old := find(previous, READY)) is not None and old.status == "True"
    floor = max(1, min(wanted, spec.replicas.min))
    scaling = deployment is not None and not rollout and was_ready and ready >= floor
    out = tuple(previous)
    if wanted == 0:
        out = put(out, READY, True, "ScaledToZero", "desired replicas is 0")
    elif rolled:
        out = put(out, READY, True, "ReplicasReady", f"{ready}/{wanted} replicas ready")
    elif scaling:
        message = f"{ready}/{wanted} replicas ready (at least {floor} serve while the rest start)"
        out = put(out, READY, True, "MinimumReplicasReady", message)
    else:
        out = put(out, READY, False, "ReplicasNotReady", f"{ready}/{wanted} replicas ready")

    if fallback.exhausted:
        out = put(out, PROGRESSING, False, UNSCHEDULABLE, "no accelerator option can be scheduled")
    elif deployment is None or rollout:
        out = put(out, PROGRESSING, True, "RollingOut", f"{ready}/{wanted} replicas ready")
    elif fallback.waiting:
        message = f"pods of {describe(spec, fallback.index)} wait for capacity"
        out = put(out, PROGRESSING, True, "WaitingForCapacity", message)
    elif not rolled:
        reason = "Scaling" if scaling else "RollingOut"
        out = put(out, PROGRESSING, True, reason, f"{ready}/{wanted} replicas ready")
    else:
        out = put(out, PROGRESSING, False, "RolloutComplete", f"{ready}/{wanted} replicas ready")

    if fallback.exhausted:
        message = (
            f"pods of {describe(spec, fallback.index)} are unschedulable and no later "
            "fallback is left"
        )
        out = put(out, DEGRADED, True, UNSCHEDULABLE, message)
    elif fallback.blocked is not None:
        # Not a GPU shortage (a missing PVC ...): another accelerator would not help.
        pods = f"pods of {describe(spec, fallback.index)}"
        message = f"{pods} cannot be scheduled: {fallback.blocked}"
        out = put(out, DEGRADED, True, SCHEDULING_FAILED, message)
    else:
        out = put(out, DEGRADED, False, AS_EXPECTED, "")

    state = fallback.state
    if state is not None and state.probe_return_index is not None:
        serving = describe(spec, state.probe_return_index)
        message = f"probing {describe(spec, None)}; {serving} serves meanwhile"
        out = put(out, FALLBACK_ACTIVE, True, "ProbingPrimary", message)
    elif state is not None and state.index is not None:
        message = f"running on {describe(spec, state.index)}; primary retried at " + (
            state.next_primary_probe or "next reconcile"
        )
        out = put(out, FALLBACK_ACTIVE, True, "PrimaryUnschedulable", message)
    else:
        out = put(out, FALLBACK_ACTIVE, False, "OnPrimary", describe(spec, None))
    return out


def _phase(conditions: tuple[Condition, ...]) -> Phase:
    by_type = {c.type: c for c in conditions}
    if by_type[DEGRADED].status == "True":
        return "Degraded"
    if by_type[READY].status == "True":
        return "Ready"
    return "Progressing"


def _events(
    before: list[Condition],
    after: tuple[Condition, ...],
    fallback: FallbackStep,
    applied: tuple[dict[str, Any], ...],
    deleted: tuple[Any, ...],
    deployment: DeploymentState | None,
) -> tuple[EventSpec, ...]:
    events: list[EventSpec] = []
    if applied:
        kinds = ", ".join(o["kind"] for o in applied)
        verb = "Created" if deployment is None else "Updated"
        events.append(EventSpec("Normal", verb, f"applied {kinds}"))
    if deleted:
        kinds = ", ".join(f"{c.kind} {c.name}" for c in deleted)
        events.append(EventSpec("Normal", "Pruned", f"deleted {kinds} (no longer wanted)"))
    if fallback.transition is not None:
        t = fallback.transition
        events.append(EventSpec("Warning" if t.warning else "Normal", t.kind, t.message))
    degraded = transitioned(before, after, DEGRADED, "True", on_message=True)
    if degraded is not None:
        events.append(EventSpec("Warning", degraded.reason, degraded.message))
    ready = transitioned(before, after, READY, "True")
    if ready is not None:
        events.append(EventSpec("Normal", "Ready", ready.message))
    return tuple(events)


def _endpoint(resource: LLMDeployment, settings: ReconcileSettings) -> str:
    port = settings.render.service_port
    host = f"{child_name(resource.metadata.name)}.{resource.metadata.namespace or 'default'}.svc"
    return f"http://{host}{'' if port == 80 else f':{port}'}/v1"


def failed(manifest: Mapping[str, Any], reason: str, message: str, now: datetime) -> Plan:
    """The Plan for a spec the API server refused (e.g. a podTemplate patch it rejects)."""
    generation = (manifest.get("metadata") or {}).get("generation")
    raw_previous = manifest.get("status") if isinstance(manifest.get("status"), dict) else {}
    return _failed(raw_previous or {}, parse_status(raw_previous), reason, message, now, generation)


def _failed(
    raw_previous: dict[str, Any],
    previous: LLMDeploymentStatus,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
) -> Plan:
    """A spec that cannot be acted on: Degraded + Event once; existing children keep running."""
    conditions = tuple(previous.conditions)
    conditions = set_condition(conditions, DEGRADED, "True", reason, message, now, generation)
    conditions = set_condition(
        conditions,
        PROGRESSING,
        "False",
        reason,
        "fix the spec; the last valid one keeps running",
        now,
        generation,
    )
    if not any(c.type == READY for c in conditions):
        conditions = set_condition(conditions, READY, "False", reason, message, now, generation)
    update = {"observed_generation": generation, "phase": "Failed", "conditions": list(conditions)}
    status = previous.model_copy(update=update)
    new_status = status_dict(status)
    changed = new_status != raw_previous
    degraded = transitioned(previous.conditions, conditions, DEGRADED, "True", on_message=True)
    events = (EventSpec("Warning", reason, message),) if degraded is not None else ()
    return Plan(
        status=new_status if changed else None,
        status_patch=merge_patch(raw_previous, new_status) if changed else None,
        events=events,
        error=PlanError(reason, message),
        replicas=previous.replicas or 0,
        ready_replicas=previous.ready_replicas or 0,
        desired_replicas=previous.desired_replicas or 0,
    )
