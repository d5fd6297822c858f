"""The autoscaling policy: signals + config + history -> desired replicas, and why.

Each control tick (the operator's, or the replay simulator's) calls `decide` once per
deployment. It is a pure function of its arguments; the history it needs for the
stabilization windows travels in `PolicyState`, which the caller keeps and passes back.

The steps, in order (docs/autoscaling.md explains each):

1. Recommendation. Over the pods that answered, with W queued and U running requests and P
   prompt tokens prefilled per second:

       served = max(U / targetRunningPerReplica, P / targetPromptTokensPerReplica)
       recommendation = ceil(served + W / targetQueueDepth)

   a replica is "full" at its batch target or its prefill target (the latter optional: on
   prefill-bound traffic a replica saturates with one or two requests running), and every
   targetQueueDepth requests queued beyond that ask for one more replica. Each figure is the
   larger of the gauge now and its average since the last decision, from the pods' counters
   (queue time; latency minus queue time; prompt tokens): a burst that came and went between
   two scrapes still counts. With load_signal "sampled", W and U are the gauges alone.
   Pods that did not answer are assumed as loaded as the average answering pod (never as
   idle). Optionally the load (in replicas, before rounding) is
   averaged over load_average_window_s: capacity follows how much traffic came recently.
   With load_percentile set, that percentile of the window's loads replaces their mean:
   capacity follows the level recent bursts regularly reach, not the rare biggest one.
2. Coming capacity. While pods are starting, the queue term is dropped from scale-up: the
   queue grew because capacity is still loading weights and those pods will absorb it. Only
   the served term (load already being served) can raise the count above current.
3. Stabilization (Kubernetes HPA semantics): scale up to the lowest recommendation of the
   scale-up window, down to the highest of the scale-down window.
4. Unknown load: no scale-down while a ready pod does not answer. Loading pods: no
   scale-down while a pod is loading (created, scheduled, not ready yet): the Deployment
   controller removes unready pods first, so any scale-down would kill one mid-load.
5. Step: at most max(maxStepUp, current x maxStepUpPercent%) up, and
   max(1, current x maxStepDownPercent%) down, per decision.
6. Clamp to [min, max] (min raised to 1 while the gateway holds requests for the deployment:
   replicas.demand_floor), then to what the budget pays for: floor(maxDollarsPerHour / $/h per
   replica). The budget is the hard ceiling: it wins over min. The limit is `budget` (or
   `max`) whenever the load asks for more than that ceiling and the count is at it, also
   when step 2 or a window is what held it there (BudgetLimited stays True while pods start).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, get_args

from llm_operator.api.spec import LLMDeploymentSpec, LoadSignal
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
    # Prompt tokens per second one replica should prefill (vllm:prompt_tokens rate); None: the
    # prefill term is off. Prefill-bound traffic (long prompts, short answers) saturates a
    # replica at a few running requests, so a batch-size target alone cannot see it.
    target_prompt_tokens_per_replica_s: float | None = None
    # Average the load (in replicas) over this many seconds before rounding: a sustained level
    # instead of the last tick's snapshot (0: the last tick). Capacity then follows how much
    # traffic came recently, not how high its latest peak was.
    load_average_window_s: float = 0.0
    # With a window: size for this percentile (nearest rank, 1-100) of its loads instead of
    # their mean. On bursty traffic with slow pod starts a pod ordered for one burst arrives
    # after it; the 90th percentile of the last 5-10 minutes follows the level bursts keep
    # reaching and ignores the one-off biggest, which a snapshot or a max would pay for.
    load_percentile: float | None = None
    # "peak": W and U are each the larger of the gauge and the interval average from the
    # counters; "sampled": the gauges alone, blind between scrapes (KubeAI's and KEDA's view).
    load_signal: LoadSignal = "peak"
    # min_replicas was raised above replicas.min by requests the gateway holds (demand stamp)
    demand_held: bool = False

    def __post_init__(self) -> None:
        if self.target_queue_depth <= 0 or self.target_running_per_replica <= 0:
            raise ValueError("targets must be positive")
        prefill = self.target_prompt_tokens_per_replica_s
        if prefill is not None and prefill <= 0:
            raise ValueError("targets must be positive")
        if self.load_average_window_s < 0:
            raise ValueError("load_average_window_s must not be negative")
        if self.load_percentile is not None and not 0 < self.load_percentile <= 100:
            raise ValueError("load_percentile must be in (0, 100]")
        if self.load_signal not in get_args(LoadSignal):
            raise ValueError(f"load_signal must be one of {get_args(LoadSignal)}")
        if not 0 <= self.min_replicas <= self.max_replicas:
            raise ValueError("need 0 <= min_replicas <= max_replicas")

    @staticmethod
    def from_spec(
        spec: LLMDeploymentSpec, dollars_per_replica_hour: float | None = None, floor: int = 0
    ) -> PolicyConfig:
        """The config an LLMDeployment asks for; `floor` is replicas.demand_floor's.

        Without targetRunningPerReplica, an eighth of maxConcurrentSequences (8 for the
        default 64) keeps batches well below the limit where latency degrades.
        """
        autoscaling, advanced = spec.autoscaling, spec.autoscaling.advanced
        batching = spec.optimization.batching
        running = advanced.target_running_per_replica or max(
            1.0, batching.max_concurrent_sequences / DEFAULT_RUNNING_PER_REPLICA_DIVISOR
        )
        return PolicyConfig(
            min_replicas=max(spec.replicas.min, floor),
            demand_held=floor > spec.replicas.min,
            max_replicas=spec.replicas.max,
            target_queue_depth=autoscaling.target_queue_depth,
            target_running_per_replica=running,
            scale_up_stabilization_s=autoscaling.scale_up_stabilization_seconds,
            scale_down_stabilization_s=autoscaling.scale_down_stabilization_seconds,
            target_prompt_tokens_per_replica_s=advanced.target_prompt_tokens_per_second,
            load_average_window_s=advanced.load_average_seconds,
            load_percentile=advanced.load_percentile,
            load_signal=advanced.load_signal,
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
    latency_counters: each pod's last latency counter reading: (pod, time, seconds).
    prompt_counters: each pod's last prompt-token counter reading: (pod, time, tokens).
    loads: of the load-average window, oldest first: (time, load in replicas before rounding).
    """

    recommendations: tuple[tuple[float, int], ...] = ()
    queue_counters: tuple[tuple[str, float, float], ...] = ()
    latency_counters: tuple[tuple[str, float, float], ...] = ()
    prompt_counters: tuple[tuple[str, float, float], ...] = ()
    loads: tuple[tuple[float, float], ...] = ()


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


Counters = tuple[tuple[str, float, float], ...]  # (pod, time, counter value)


def _interval_rate(
    seen: dict[str, tuple[float, float]], name: str, now: float, total: float
) -> tuple[float, float] | None:
    """(seconds since the last reading, counter increase) of one pod's counter; None when
    there is no usable previous reading (first sight of the pod, or it restarted)."""
    before = seen.get(name)
    if before is None or now <= before[0] or total < before[1]:
        return None
    return now - before[0], total - before[1]


@dataclass(frozen=True)
class _Load:
    """The answering pods' load, interval-averaged where counters allow; counters to keep."""

    waiting: float
    running: float
    prompt_tokens_per_s: float
    queue_counters: Counters
    latency_counters: Counters
    prompt_counters: Counters


def _load(signals: DeploymentSignals, state: PolicyState, now: float, peak: bool) -> _Load:
    """Queued and running requests over the answering pods, each the larger of the gauge now
    and its average since the last decision (the gauge alone unless `peak`); their prompt
    tokens per second.

    The queue average is the rate of the queue-time counter; the running average is the rate
    of the latency counter minus the queue counter's (time in the server minus time queued);
    the prefill rate is the prompt-token counter's. A counter that went down (pod restarted)
    or a pod seen for the first time gives no average this time."""
    ready = {p.name for p in signals.ready}

    def seen(counters: Counters) -> dict[str, tuple[float, float]]:
        return {name: (t, total) for name, t, total in counters if name in ready}

    # sampled: no queue or latency readings to average from, none kept
    queue = seen(state.queue_counters) if peak else {}
    latency = seen(state.latency_counters) if peak else {}
    prompt = seen(state.prompt_counters)
    before_queue, before_latency, before_prompt = dict(queue), dict(latency), dict(prompt)
    waiting = running = prompt_rate = 0.0
    for pod in signals.answered:
        queued, served = float(pod.waiting), float(pod.running)
        queue_delta = None
        if peak and pod.queue_seconds_total is not None:
            queue_delta = _interval_rate(before_queue, pod.name, now, pod.queue_seconds_total)
            if queue_delta is not None:
                queued = max(queued, queue_delta[1] / queue_delta[0])
            queue[pod.name] = (now, pod.queue_seconds_total)
        if peak and pod.latency_seconds_total is not None:
            latency_delta = _interval_rate(before_latency, pod.name, now, pod.latency_seconds_total)
            if latency_delta is not None and queue_delta is not None:
                busy = latency_delta[1] - queue_delta[1]
                served = max(served, busy / latency_delta[0])
            latency[pod.name] = (now, pod.latency_seconds_total)
        prompt_delta = _interval_rate(before_prompt, pod.name, now, pod.prompt_tokens_total)
        if prompt_delta is not None:
            prompt_rate += prompt_delta[1] / prompt_delta[0]
        prompt[pod.name] = (now, pod.prompt_tokens_total)
        waiting += queued
        running += served

    def flat(kept: dict[str, tuple[float, float]]) -> Counters:
        return tuple((name, t, total) for name, (t, total) in sorted(kept.items()))

    return _Load(waiting, running, prompt_rate, flat(queue), flat(latency), flat(prompt))


def _recommend(
    signals: DeploymentSignals,
    config: PolicyConfig,
    load: _Load,
    past: tuple[tuple[float, float], ...],
    now: float,
) -> tuple[int, int, str, bool, tuple[tuple[float, float], ...]]:
    """Step 1-2: (recommendation, what the load asks for before step 2's hold, explanation,
    held for coming capacity, loads to keep)."""
    answered = signals.answered
    current = signals.current_replicas
    window = config.load_average_window_s
    loads = tuple((t, x) for t, x in past if now - t < window and t < now)
    if not answered:
        what = "no ready pod answered" if signals.ready else "no ready pod to measure"
        return current, current, f"{what}; holding", False, loads
    scale = len(signals.ready) / len(answered)  # unanswered pods: assumed average load
    served_term = load.running * scale / config.target_running_per_replica
    prefill = config.target_prompt_tokens_per_replica_s
    if prefill is not None:  # a replica is full at its batch or its prefill target
        served_term = max(served_term, load.prompt_tokens_per_s * scale / prefill)
    queue_term = load.waiting * scale / config.target_queue_depth
    loads += ((now, served_term + queue_term),) if window > 0 else ()

    def windowed(latest: float) -> float:  # over the window, the latest sample as given
        return _window_load([x for _, x in loads[:-1]] + [latest], config.load_percentile)

    raw = math.ceil(windowed(served_term + queue_term) - 1e-9)

    def average(now: int, avg: float) -> str:
        return f" ({avg:.1f} on average)" if avg > now + 0.05 else ""

    prefill_text = "" if prefill is None else f", {prefill:g} prompt tokens/s"
    rate_text = "" if prefill is None else f", {load.prompt_tokens_per_s:.0f} prompt tokens/s"
    statistic = "averaged" if config.load_percentile is None else f"p{config.load_percentile:g}"
    over = f" {statistic} over {window:g}s" if window > 0 else ""
    text = (
        f"{signals.waiting} waiting{average(signals.waiting, load.waiting)}, "
        f"{signals.running} running{average(signals.running, load.running)}{rate_text} on "
        f"{len(answered)} pod(s) want {raw}{over} (targets: {config.target_queue_depth:g} waiting, "
        f"{config.target_running_per_replica:g} running{prefill_text} per replica)"
    )
    if signals.starting and raw > current:
        held = max(math.ceil(windowed(served_term) - 1e-9), current)
        if held < raw:
            why = f"{text}; {signals.starting} starting pod(s) will absorb the queue"
            return held, raw, why, True, loads
    return raw, raw, text, False, loads


def _window_load(samples: list[float], percentile: float | None) -> float:
    """The mean of the load samples, or their nearest-rank percentile."""
    if percentile is None:
        return sum(samples) / len(samples)
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(percentile / 100 * len(ordered)) - 1)]


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
    load = _load(signals, state, now, config.load_signal == "peak")
    raw, asked, why, coming, loads = _recommend(signals, config, load, state.loads, now)
    up, down, history = _windows(state, config, now, raw)
    new_state = PolicyState(
        history, load.queue_counters, load.latency_counters, load.prompt_counters, loads
    )
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
    if desired < current and signals.loading:
        desired, limit = current, "starting"
        notes.append(f"{signals.loading} pod(s) loading: no scale-down until they are ready")

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
        if config.demand_held:
            notes.append(f"kept at {config.min_replicas}: the gateway held requests recently")
        else:
            notes.append(f"kept at replicas.min={config.min_replicas}")
    affordable = config.affordable
    if affordable is not None and desired > affordable:
        desired, limit = affordable, "budget"
        notes.append(
            f"budget ${config.budget_dollars_per_hour:.2f}/h pays for {affordable} replica(s) "
            f"at ${config.dollars_per_replica_hour:.2f}/h"
        )

    # A ceiling binds whenever the load asks for more than it allows and the count is at it,
    # also when starting pods or a window is what held the count there this time.
    if limit not in ("max", "budget"):
        if affordable is not None and asked > affordable and desired >= affordable:
            limit = "budget"
            notes.append(f"the load asks for {asked}; the budget pays for {affordable}")
        elif asked > config.max_replicas and desired >= config.max_replicas:
            limit = "max"
            notes.append(f"the load asks for {asked}; replicas.max={config.max_replicas}")

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
