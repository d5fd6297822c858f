"""The autoscaling policy: signals + config + history -> desired replicas, and why.

Each control tick (the operator's, or the replay simulator's) calls `decide` once per
deployment. It is a pure function of its arguments; the history it needs for the
stabilization windows travels in `PolicyState`, which the caller keeps and passes back.

The steps, in order (docs/autoscaling.md explains each):

1. Recommendation. Over the pods that answered, with W queued and U running requests:

       recommendation = ceil(U / targetRunningPerReplica + W / targetQueueDepth)

   a replica is "full" at targetRunningPerReplica running requests, and every
   targetQueueDepth requests queued beyond that ask for one more replica. A pod's W is the
   larger of its queue now and its queue averaged since the last decision (the rate of its
   queue-time counter): a burst that came and went between two scrapes still counts. Pods
   that did not answer are assumed as loaded as the average answering pod (never as idle).
2. Coming capacity. While pods are starting, the queue term is dropped from scale-up: the
   queue grew because capacity is still loading weights and those pods will absorb it. Only
   the running term (load already being served) can raise the count above current.
3. Stabilization (Kubernetes HPA semantics): scale up to the lowest recommendation of the
   scale-up window, down to the highest of the scale-down window.
4. Unknown load: no scale-down while a ready pod does not answer.
5. Step: at most max(maxStepUp, current x maxStepUpPercent%) up, and
   max(1, current x maxStepDownPercent%) down, per decision.
6. Clamp to [min, max], then to what the budget pays for: floor(maxDollarsPerHour / $/h per
   replica). The budget is the hard ceiling: it wins over min.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from llm_operator.api.spec import LLMDeploymentSpec
from llm_operator.autoscale.signals import DeploymentSignals
from llm_operator.cost import affordable_replicas

Limit = Literal["max", "min", "budget", "step", "stabilization", "unknown-load", "starting"]
DEFAULT_RUNNING_PER_REPLICA_DIVISOR = 8  # see PolicyConfig.from_spec


@dataclass(frozen=True)
class PolicyConfig:
    min_replicas: int
    max_replicas: int
    target_queue_depth: float = 4.0
    target_running_per_replica: float = 8.0
    scale_up_stabilization_s: float = 30.0
    scale_down_stabilization_s: float = 300.0
    max_step_up: int = 4
    max_step_up_percent: float = 100.0
    max_step_down_percent: float = 50.0
    dollars_per_replica_hour: float | None = None
    budget_dollars_per_hour: float | None = None

    def __post_init__(self) -> None:
        if self.target_queue_depth <= 0 or self.target_running_per_replica <= 0:
            raise ValueError("targets must be positive")
        if not 0 <= self.min_replicas <= self.max_replicas:
            raise ValueError("need 0 <= min_replicas <= max_replicas")

    @staticmethod
    def from_spec(
        spec: LLMDeploymentSpec, dollars_per_replica_hour: float | None = None
    ) -> PolicyConfig:
        """The config an LLMDeployment asks for.

        targetRunningPerReplica is not in the API yet: an eighth of maxConcurrentSequences
        (8 for the default 64) keeps batches well below the limit where latency degrades.
        """
        autoscaling = spec.autoscaling
        batching = spec.optimization.batching
        return PolicyConfig(
            min_replicas=spec.replicas.min,
            max_replicas=spec.replicas.max,
            target_queue_depth=autoscaling.target_queue_depth,
            target_running_per_replica=max(
                1.0, batching.max_concurrent_sequences / DEFAULT_RUNNING_PER_REPLICA_DIVISOR
            ),
            scale_up_stabilization_s=autoscaling.scale_up_stabilization_seconds,
            scale_down_stabilization_s=autoscaling.scale_down_stabilization_seconds,
            dollars_per_replica_hour=dollars_per_replica_hour,
            budget_dollars_per_hour=(
                autoscaling.budget.max_dollars_per_hour if autoscaling.budget else None
            ),
        )

    @property
    def affordable(self) -> int | None:
        if self.budget_dollars_per_hour is None or not self.dollars_per_replica_hour:
            return None
        return affordable_replicas(self.budget_dollars_per_hour, self.dollars_per_replica_hour)


@dataclass(frozen=True)
class PolicyState:
    """What the next decision needs from the past.

    recommendations: of the longest window, oldest first: (time in seconds, replicas).
    queue_counters: each pod's last queue-time counter reading: (pod, time, seconds).
    """

    recommendations: tuple[tuple[float, int], ...] = ()
    queue_counters: tuple[tuple[str, float, float], ...] = ()


@dataclass(frozen=True)
class Decision:
    desired: int
    current: int
    recommendation: int  # step 1-2's number, before windows, steps and clamps
    reason: str
    limit: Limit | None
    state: PolicyState = field(repr=False)
    waiting: int = 0
    running: int = 0
    ready: int = 0
    starting: int = 0
    unanswered: int = 0

    @property
    def direction(self) -> int:
        return (self.desired > self.current) - (self.desired < self.current)


def _queue(
    signals: DeploymentSignals, state: PolicyState, now: float
) -> tuple[float, tuple[tuple[str, float, float], ...]]:
    """Queued requests over the answering pods, each the larger of now and its interval
    average; and the counter readings to keep. A counter that went down (pod restarted) or a
    pod seen for the first time gives no average this time."""
    seen = {name: (t, total) for name, t, total in state.queue_counters}
    ready = {p.name for p in signals.ready}
    keep = {name: v for name, v in seen.items() if name in ready}
    waiting = 0.0
    for pod in signals.answered:
        queued = float(pod.waiting)
        if pod.queue_seconds_total is not None:
            before = seen.get(pod.name)
            if before and now > before[0] and pod.queue_seconds_total >= before[1]:
                average = (pod.queue_seconds_total - before[1]) / (now - before[0])
                queued = max(queued, average)
            keep[pod.name] = (now, pod.queue_seconds_total)
        waiting += queued
    return waiting, tuple((name, t, total) for name, (t, total) in sorted(keep.items()))


def _recommend(
    signals: DeploymentSignals, config: PolicyConfig, waiting_now: float
) -> tuple[int, str, bool]:
    """Step 1-2: (recommendation, explanation, held for coming capacity)."""
    answered = signals.answered
    current = signals.current_replicas
    if not answered:
        what = "no ready pod answered" if signals.ready else "no ready pod to measure"
        return current, f"{what}; holding", False
    scale = len(signals.ready) / len(answered)  # unanswered pods: assumed average load
    waiting, running = waiting_now * scale, signals.running * scale
    running_term = running / config.target_running_per_replica
    queue_term = waiting / config.target_queue_depth
    raw = math.ceil(running_term + queue_term - 1e-9)
    averaged = f" ({waiting_now:.1f} on average)" if waiting_now > signals.waiting + 0.05 else ""
    text = (
        f"{signals.waiting} waiting{averaged}, {signals.running} running on {len(answered)} "
        f"pod(s) want {raw} (targets: {config.target_queue_depth:g} waiting, "
        f"{config.target_running_per_replica:g} running per replica)"
    )
    if signals.starting and raw > current:
        held = max(math.ceil(running_term - 1e-9), current)
        if held < raw:
            return held, f"{text}; {signals.starting} starting pod(s) will absorb the queue", True
    return raw, text, False


def _windows(
    state: PolicyState, config: PolicyConfig, now: float, raw: int
) -> tuple[int, int, tuple[tuple[float, int], ...]]:
    """Step 3: (lowest of the scale-up window, highest of the scale-down window, history)."""
    keep = max(config.scale_up_stabilization_s, config.scale_down_stabilization_s)
    history = [(t, r) for t, r in state.recommendations if now - t <= keep and t < now]
    history.append((now, raw))
    up = min(r for t, r in history if now - t <= config.scale_up_stabilization_s)
    down = max(r for t, r in history if now - t <= config.scale_down_stabilization_s)
    return up, down, tuple(history)


def decide(
    signals: DeploymentSignals, config: PolicyConfig, state: PolicyState, now: float
) -> Decision:
    """Desired replicas for one deployment at time `now` (seconds, any monotonic origin)."""
    current = signals.current_replicas
    waiting, counters = _queue(signals, state, now)
    raw, why, coming = _recommend(signals, config, waiting)
    up, down, history = _windows(state, config, now, raw)
    new_state = PolicyState(history, counters)
    limit: Limit | None = "starting" if coming else None
    if signals.ready and not signals.answered:
        limit = "unknown-load"
    notes: list[str] = []

    desired = current
    if up > current:
        desired = up
        if up < raw:
            limit = "stabilization"
            notes.append(f"scale-up window {config.scale_up_stabilization_s:g}s allows {up}")
    elif raw > current:
        limit = "stabilization"
        notes.append(f"waiting out the {config.scale_up_stabilization_s:g}s scale-up window")
    elif down < current:
        desired = down
        if down > raw:
            limit = "stabilization"
            notes.append(f"scale-down window {config.scale_down_stabilization_s:g}s keeps {down}")
    elif raw < current:
        limit = "stabilization"
        notes.append(f"the {config.scale_down_stabilization_s:g}s scale-down window keeps {down}")

    if desired < current and signals.unanswered:
        desired, limit = current, "unknown-load"
        notes.append(f"{signals.unanswered} pod(s) did not answer: no scale-down on unknown load")

    step_up = max(config.max_step_up, math.floor(current * config.max_step_up_percent / 100))
    step_down = max(1, math.floor(current * config.max_step_down_percent / 100))
    if desired > current + step_up:
        desired, limit = current + step_up, "step"
        notes.append(f"step limited to +{step_up}")
    elif desired < current - step_down:
        desired, limit = current - step_down, "step"
        notes.append(f"step limited to -{step_down}")

    if desired > config.max_replicas:
        desired, limit = config.max_replicas, "max"
        notes.append(f"capped at replicas.max={config.max_replicas}")
    elif desired < config.min_replicas:
        desired, limit = config.min_replicas, "min"
        notes.append(f"kept at replicas.min={config.min_replicas}")
    affordable = config.affordable
    if affordable is not None and desired > affordable:
        desired, limit = affordable, "budget"
        notes.append(
            f"budget ${config.budget_dollars_per_hour:.2f}/h pays for {affordable} replica(s) "
            f"at ${config.dollars_per_replica_hour:.2f}/h"
        )

    verb = "scale up" if desired > current else "scale down" if desired < current else "hold"
    head = f"{verb} {current}->{desired}" if desired != current else f"hold at {current}"
    return Decision(
        desired=desired,
        current=current,
        recommendation=raw,
        reason="; ".join([f"{head}: {why}", *notes]),
        limit=limit,
        state=new_state,
        waiting=signals.waiting,
        running=signals.running,
        ready=len(signals.ready),
        starting=signals.starting,
        unanswered=signals.unanswered,
    )
