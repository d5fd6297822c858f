"""Replicas, limits and cost of one LLMDeployment for one reconcile. Pure.

- builtin: on a reconcile that carries a fresh scrape, the autoscaler policy
  (autoscale.policy.decide) picks the replicas; otherwise the last decision
  (status.desiredReplicas) holds, clamped to [min, max] and the budget at once after a spec
  change. BudgetLimited / ScalingLimited follow the decision's binding limit.
- keda: the ScaledObject's HPA owns Deployment.spec.replicas (rendered as None); the status
  reports the Deployment's count; BudgetLimited says whether the budget lowered
  maxReplicaCount.
- none: replicas.desired (default 1), clamped to [min, max] and the budget.

The budget is the hard ceiling in every mode, priced for the resolved option (a fallback
accelerator when one is active) with cost.py, the arithmetic `llmops cost` uses.
Cost: the pods that exist are billed (starting ones hold their GPU); $ per million tokens comes
from the generation-token counters' rate between two scrapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from llm_operator.api.spec import LLMDeploymentSpec
from llm_operator.api.status import (
    BUDGET_EXCEEDED,
    BUDGET_LIMITED,
    SCALING_LIMITED,
    Condition,
    ConditionStatus,
    Cost,
    LLMDeploymentStatus,
    ScalingDecision,
)
from llm_operator.autoscale.policy import Decision, PolicyConfig, decide
from llm_operator.autoscale.signals import DeploymentSignals
from llm_operator.cost import (
    budget_capped_max,
    current_dollars_per_hour,
    dollars_per_million_tokens,
)
from llm_operator.plan.conditions import find, set_condition, transitioned
from llm_operator.plan.observed import DeploymentState, Observed, PodSummary, ScalingMemory
from llm_operator.plan.timefmt import format_time
from llm_operator.plan.types import CostReport, EventSpec
from llm_operator.resolve import Resolution

# status.cost.dollarsPerMillionTokens moves only when the figure moves by more than this, so a
# steady load does not rewrite the status every scrape.
TOKEN_COST_TOLERANCE = 0.10
SEED_AGE_SECONDS = 0.001  # the policy keeps only history strictly before `now`


@dataclass(frozen=True)
class Scaling:
    replicas: int | None  # Deployment.spec.replicas; None when KEDA's HPA owns it
    wanted: int  # status.desiredReplicas
    conditions: tuple[Condition, ...]  # the previous ones with BudgetLimited / ScalingLimited
    events: tuple[EventSpec, ...]
    last_scaling: ScalingDecision | None
    cost: Cost
    report: CostReport
    memory: ScalingMemory | None  # None: no scrape this reconcile, memory unchanged


@dataclass(frozen=True)
class _Limits:
    budget: bool | None  # None: the condition is not evaluated in this mode (removed)
    max: bool | None


def plan_scaling(
    spec: LLMDeploymentSpec,
    resolution: Resolution,
    per_replica: float,
    target: int,
    previous: LLMDeploymentStatus,
    observed: Observed,
    deployment: DeploymentState | None,
    now: datetime,
    generation: int | None,
    floor: int = 0,
    startup_seconds: float = float("inf"),
) -> Scaling:
    """`target` is decide()'s replica target (replicas.replica_target): the count held
    between autoscaler decisions (builtin) or replicas.desired within the bounds (none).
    `floor` is replicas.demand_floor's: 1 while the gateway holds requests recently.
    `startup_seconds`: how long a pod may load (the startup probe's budget); a pod loading
    for less holds scale-down (past it, the kubelet restarts it and the load is lost anyway)."""
    bounds, mode = spec.replicas, spec.autoscaling.mode
    capped = budget_capped_max(spec, per_replica)
    decision: Decision | None = None
    memory: ScalingMemory | None = None
    last_scaling, replicas = previous.last_scaling, None
    if mode == "keda":
        wanted = deployment.spec_replicas if deployment and deployment.spec_replicas else bounds.min
        limits = _Limits(budget=capped < bounds.max, max=None)
    elif mode == "none":
        asked = bounds.desired
        wanted = replicas = target
        in_range = min(max(asked, bounds.min), bounds.max)
        limits = _Limits(budget=in_range > capped, max=asked > bounds.max)
    else:
        before = previous.desired_replicas
        held = target
        wanted, limits = held, _held_limits(previous.conditions, before, spec, capped)
        if observed.scrape is not None:
            signals = DeploymentSignals(
                current_replicas=held,
                ready=observed.scrape.pods,
                starting=sum(p.starting for p in observed.pods),
                loading=_loading(observed.pods, now, startup_seconds),
            )
            config = PolicyConfig.from_spec(spec, per_replica, floor)
            state = observed.memory.policy
            if not state.recommendations and before is not None:
                # A fresh memory with a count already decided (operator restart): as if that
                # count had just been recommended, so neither window is skipped.
                seed = ((observed.scrape.at - SEED_AGE_SECONDS, held),)
                state = replace(state, recommendations=seed)
            decision = decide(signals, config, state, observed.scrape.at)
            wanted = decision.desired
            limits = _Limits(budget=decision.limit == "budget", max=decision.limit == "max")
        if before is not None and wanted != before:
            reason = decision.reason if decision else f"spec change: clamped to {wanted}"
            if decision is None and before < floor <= wanted:
                reason = f"scale from zero: the gateway holds requests ({before}->{wanted})"
            last_scaling = ScalingDecision(
                time=format_time(now), from_replicas=before, to_replicas=wanted, reason=reason
            )
        replicas = wanted
    if observed.scrape is not None:
        tokens = observed.memory.tokens.update(observed.scrape.pods, observed.scrape.at)
        policy = decision.state if decision else observed.memory.policy
        memory = ScalingMemory(policy=policy, tokens=tokens)

    conditions = _limit_conditions(
        previous.conditions, spec, resolution, per_replica, capped, limits, now, generation
    )
    events = _events(previous, conditions, last_scaling, wanted)
    cost, report = _cost(spec, resolution, per_replica, previous, observed, memory, wanted, limits)
    if decision is not None:
        report = replace(report, direction=decision.direction)
    return Scaling(replicas, wanted, conditions, events, last_scaling, cost, report, memory)


def _loading(pods: Sequence[PodSummary], now: datetime, startup_seconds: float) -> int:
    """Pods loading (PodSummary.loading) for less than the startup budget."""
    return sum(
        p.loading and (p.created is None or (now - p.created).total_seconds() < startup_seconds)
        for p in pods
    )


def _held_limits(
    conditions: Sequence[Condition], before: int | None, spec: LLMDeploymentSpec, capped: int
) -> _Limits:
    """Between decisions the limits stay as the last decision left them, unless a spec change
    clamped the count (then the clamp that did it binds)."""

    def was(type_: str) -> bool:
        old = find(conditions, type_)
        return old is not None and old.status == "True"

    bounds = spec.replicas
    count = bounds.min if before is None else before
    return _Limits(
        budget=was(BUDGET_LIMITED) or min(max(count, bounds.min), bounds.max) > capped,
        max=was(SCALING_LIMITED) or count > bounds.max,
    )


def _limit_conditions(
    previous: Sequence[Condition],
    spec: LLMDeploymentSpec,
    resolution: Resolution,
    per_replica: float,
    capped: int,
    limits: _Limits,
    now: datetime,
    generation: int | None,
) -> tuple[Condition, ...]:
    def put(
        out: tuple[Condition, ...], type_: str, on: bool, reason: str, message: str
    ) -> tuple[Condition, ...]:
        status: ConditionStatus = "True" if on else "False"
        return set_condition(out, type_, status, reason, message, now, generation)

    gone = {BUDGET_LIMITED} if limits.budget is None else set()
    gone |= {SCALING_LIMITED} if limits.max is None else set()
    out = tuple(c for c in previous if c.type not in gone)  # not evaluated in this mode
    budget, bounds = spec.autoscaling.budget, spec.replicas
    if limits.budget is not None:
        if budget is None:
            out = put(out, BUDGET_LIMITED, False, "NoBudget", "no budget set")
        else:
            pays = (
                f"${budget.max_dollars_per_hour:.2f}/h pays for {capped} replica(s) of "
                f"{resolution.devices} ({resolution.capacity}) at ${per_replica:.2f}/h each"
            )
            if limits.budget:
                head = {
                    "builtin": "the load asks for more replicas than the budget pays for",
                    "keda": f"the ScaledObject's maxReplicaCount is lowered to {capped}",
                    "none": "replicas.desired costs more than the budget",
                }[spec.autoscaling.mode]
                out = put(out, BUDGET_LIMITED, True, BUDGET_EXCEEDED, f"{head}: {pays}")
            else:
                out = put(out, BUDGET_LIMITED, False, "WithinBudget", pays)
    if limits.max is not None:
        if limits.max:
            message = f"more replicas are asked for than replicas.max={bounds.max}"
            out = put(out, SCALING_LIMITED, True, "MaxReplicas", message)
        else:
            message = f"replicas.min={bounds.min}, replicas.max={bounds.max}"
            out = put(out, SCALING_LIMITED, False, "WithinRange", message)
    return out


def _events(
    previous: LLMDeploymentStatus,
    conditions: tuple[Condition, ...],
    last_scaling: ScalingDecision | None,
    wanted: int,
) -> tuple[EventSpec, ...]:
    events: list[EventSpec] = []
    if last_scaling is not None and last_scaling != previous.last_scaling:
        up = last_scaling.to_replicas > last_scaling.from_replicas
        events.append(EventSpec("Normal", "ScaledUp" if up else "ScaledDown", last_scaling.reason))
    for type_ in (BUDGET_LIMITED, SCALING_LIMITED):
        started = transitioned(previous.conditions, conditions, type_, "True")
        if started is not None:
            events.append(EventSpec("Warning", type_, f"{started.message} (desired {wanted})"))
    return tuple(events)


def _cost(
    spec: LLMDeploymentSpec,
    resolution: Resolution,
    per_replica: float,
    previous: LLMDeploymentStatus,
    observed: Observed,
    memory: ScalingMemory | None,
    wanted: int,
    limits: _Limits,
) -> tuple[Cost, CostReport]:
    existing = len(observed.pods)
    dollars_per_hour = current_dollars_per_hour(existing, per_replica)
    rate = (memory or observed.memory).tokens.tokens_per_second
    per_million = None if rate is None else dollars_per_million_tokens(dollars_per_hour, rate)
    budget = spec.autoscaling.budget.max_dollars_per_hour if spec.autoscaling.budget else None
    last = previous.cost.dollars_per_million_tokens if previous.cost else None
    cost = Cost(
        dollars_per_hour=round(dollars_per_hour, 4),
        dollars_per_million_tokens=_settled(last, per_million),
        budget_dollars_per_hour=budget,
    )
    report = CostReport(
        accelerator=resolution.accelerator.name,
        capacity=spec.accelerator.capacity,
        dollars_per_hour=dollars_per_hour,
        budget_dollars_per_hour=budget,
        dollars_per_million_tokens=per_million,
        desired=wanted,
        current=existing,
        ready=sum(p.ready for p in observed.pods),
        starting=sum(p.starting for p in observed.pods),
        budget_limited=limits.budget if spec.autoscaling.mode == "builtin" else None,
        max_limited=limits.max if spec.autoscaling.mode == "builtin" else None,
        scrape_failures=sum(not p.scrape_ok for p in observed.scrape.pods)
        if observed.scrape
        else 0,
    )
    return cost, report


def _settled(last: float | None, new: float | None) -> float | None:
    """The status figure: the last one measured, moved only by more than the tolerance."""
    if new is None:
        return last
    rounded = float(f"{new:.3g}")
    if last is None or abs(rounded - last) > TOKEN_COST_TOLERANCE * last:
        return rounded
    return last
