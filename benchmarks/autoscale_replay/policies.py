"""The replayed policies: ours (the operator's own function) and the baselines.

- ours:   llm_operator.autoscale.policy.decide, the function the operator runs;
- static: a fixed replica count;
- hpa:    Kubernetes HPA on GPU utilization (DCGM duty cycle: share of the interval a replica
          had work), HPA's algorithm: 10 % tolerance, unready pods count as 0 % on scale-up,
          missing metrics as 100 % on scale-down / 0 % on scale-up, no scale-up window,
          max(4 pods, 100 %) up per step;
- kubeai: KubeAI's autoscaler: a 10-minute moving average of in-flight requests (counted at
          the gateway), divided by targetRequests, a lower count applied after
          scaleDownDelaySeconds.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from llm_operator.autoscale import DeploymentSignals, PolicyConfig, PolicyState, decide
from llm_operator.autoscale.policy import DEFAULT_RUNNING_PER_REPLICA_DIVISOR

from .simulator import Capacity, Tick

MAX_REPLICAS = 40
# The operator's running target when targetRunningPerReplica is unset: the replica's
# concurrent sequences / 8 (8 for the server's default 64).
DEFAULT_RUNNING = Capacity().max_concurrency / DEFAULT_RUNNING_PER_REPLICA_DIVISOR


class Ours:
    def __init__(self, floor: int, ceiling: int, knobs: dict[str, Any]):
        self.config = PolicyConfig(
            min_replicas=floor,
            max_replicas=ceiling,
            target_queue_depth=knobs.get("target_queue", 4.0),
            target_running_per_replica=knobs.get("target_running", DEFAULT_RUNNING),
            target_prompt_tokens_per_replica_s=knobs.get("target_prompt_tokens_s"),
            load_average_window_s=knobs.get("average_s", 0.0),
            load_percentile=knobs.get("percentile"),
            scale_up_stabilization_s=knobs.get("up_window_s", 0.0),
            scale_down_stabilization_s=knobs.get("down_window_s", 300.0),
            load_signal=knobs.get("load_signal", "peak"),
        )
        self.state = PolicyState()

    def __call__(self, tick: Tick) -> int:
        signals = DeploymentSignals(tick.current, tick.pods, tick.starting)
        decision = decide(signals, self.config, self.state, tick.now)
        self.state = decision.state
        return decision.desired


class Static:
    def __init__(self, replicas: int):
        self.replicas = replicas

    def __call__(self, tick: Tick) -> int:
        return self.replicas


class Hpa:
    """The HPA controller's algorithm on a per-pod utilization metric (duty cycle)."""

    def __init__(
        self, floor: int, target: float, down_s: float = 300.0, ceiling: int = MAX_REPLICAS
    ):
        self.floor, self.target, self.down_s, self.ceiling = floor, target, down_s, ceiling
        self.history: deque[tuple[float, int]] = deque()

    def _raw(self, tick: Tick) -> int:
        known = [b for b in tick.busy if b is not None]
        missing = len(tick.busy) - len(known)
        if not known:
            return tick.current
        ratio = sum(known) / (len(known) * self.target)
        if abs(ratio - 1) <= 0.1:
            return tick.current
        if ratio > 1:  # scale-up: missing and unready pods count as idle
            pods = len(tick.busy) + tick.starting
            ratio = sum(known) / (pods * self.target)
            return tick.current if ratio <= 1.1 else math.ceil(ratio * pods)
        ratio = (sum(known) + missing) / (len(tick.busy) * self.target)  # missing: 100 %
        return tick.current if ratio >= 0.9 else math.ceil(ratio * len(tick.busy))

    def __call__(self, tick: Tick) -> int:
        raw = self._raw(tick)
        self.history.append((tick.now, raw))
        while self.history and tick.now - self.history[0][0] > self.down_s:
            self.history.popleft()
        down = max(r for _, r in self.history)  # no scale-up window: up = raw
        desired = raw if raw > tick.current else min(down, tick.current)
        desired = min(desired, tick.current + max(4, tick.current))
        return max(self.floor, min(self.ceiling, desired))


class KubeAi:
    """KubeAI's model autoscaler: in-flight requests (counted at its proxy) averaged over a
    moving window (`timeWindow`, 10 minutes), divided by `targetRequests`, rounded up; a lower
    count waits `scaleDownDelaySeconds` (default 30 s) before it is applied."""

    def __init__(
        self,
        floor: int,
        target: float,
        window_s: float = 600.0,
        interval: float = 10.0,
        down_delay_s: float = 30.0,
        ceiling: int = MAX_REPLICAS,
    ):
        self.floor, self.target, self.ceiling = floor, target, ceiling
        self.down_delay_s = down_delay_s
        self.samples: deque[int] = deque(maxlen=max(1, round(window_s / interval)))
        self.history: deque[tuple[float, int]] = deque()

    def __call__(self, tick: Tick) -> int:
        self.samples.append(tick.in_flight)
        average = sum(self.samples) / len(self.samples)
        raw = max(self.floor, min(self.ceiling, math.ceil(average / self.target - 1e-9)))
        self.history.append((tick.now, raw))
        while tick.now - self.history[0][0] > self.down_delay_s:
            self.history.popleft()
        if raw >= tick.current:
            return raw
        return min(tick.current, max(r for _, r in self.history))
