"""The configurations replayed, and the process pool that replays each on both trace halves.

Equal budgets: every dynamic policy (ours, HPA, KubeAI) gets the same number of
configurations (784), the same replica floors and scale-down windows, and runs pinned
(min = max) at each floor, so that where not scaling is best no policy is handicapped.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from .frontier import Pair
from .policies import DEFAULT_RUNNING, MAX_REPLICAS, Hpa, KubeAi, Ours, Static
from .simulator import Policy, SimConfig, simulate
from .trace import Request

Factory = Callable[[], Policy]
Config = tuple[str, dict[str, Any], int, Factory]  # (policy, knobs, initial replicas, factory)

FLOORS = range(1, 17)  # replicas.min / minReplicas: the same for every dynamic policy
DOWN_WINDOWS = (300.0, 450.0, 600.0)  # scale-down windows / delays: the same for each
BUDGET = len(FLOORS) * (1 + 16 * len(DOWN_WINDOWS))  # 784 configurations per dynamic policy

# HPA: 16 utilization targets x 3 windows per floor.
HPA_TARGETS = tuple(round(0.2 + 0.05 * i, 2) for i in range(16))  # 0.2-0.95
# KubeAI: 12 in-flight targets x 4 delays (30 s is its default scaleDownDelaySeconds).
KUBEAI_TARGETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 8.0)
KUBEAI_DELAYS = (30.0, *DOWN_WINDOWS)
# Ours: 16 per floor and window. The load window (last tick; mean of 600 s; 90th percentile
# of 600 s) x targetQueueDepth {1, 4, 16, 64}, and a prefill target of half a replica's
# prefill rate with the last tick or the percentile and queue 1 or 4. The running target
# stays at the operator's default and the signal at peak: the grid spends its budget where
# the earlier (in-sample) sweeps found the frontier; the two ablations below say what those
# two would add.
OURS_LOADS: tuple[tuple[float, float | None], ...] = ((0.0, None), (600.0, None), (600.0, 90))
OURS_QUEUE = (1.0, 4.0, 16.0, 64.0)
PREFILL_SHARE = 0.5
PREFILL_LOADS = (OURS_LOADS[0], OURS_LOADS[2])
PREFILL_QUEUE = (1.0, 4.0)
ABLATION_RUNNING = DEFAULT_RUNNING / 2  # 4: KubeAI's winning in-flight targets were 2-8

DYNAMIC = ("ours", "hpa", "kubeai")
# Ablations (outside the equal budget): ours' grid with one more knob value.
ABLATIONS = ("ours+running4", "ours+sampled")
DEFAULTS = ("ours-default", "hpa-default", "kubeai-default")  # no knob set, floors 1-16

SWEEP_TEXT = {
    "ours": "per floor 1-16 and scale-down window {300, 450, 600} s: load window {last tick, "
    "mean of 600 s, 90th percentile of 600 s} x targetQueueDepth {1, 4, 16, 64}, plus "
    "targetPromptTokensPerSecond = half a replica's prefill rate x {last tick, 90th percentile} "
    "x targetQueueDepth {1, 4}; targetRunningPerReplica at its default (8), loadSignal peak, "
    "no scale-up window; plus min = max (pinned) for each floor",
    "hpa": "per floor 1-16: target utilization {0.2, 0.25, ..., 0.95} (16) x scale-down "
    "stabilization window {300, 450, 600} s; plus min = max (pinned) for each floor",
    "kubeai": "per floor 1-16: targetRequests (in flight per replica) {0.1, 0.2, 0.3, 0.4, 0.5, "
    "0.75, 1, 1.5, 2, 3, 4, 8} x scaleDownDelaySeconds {30, 300, 450, 600}; 10-minute moving "
    "average; plus min = max (pinned) for each floor",
    "static": "replicas 1-30 (not a tuned policy: the reference for 'static at the peak')",
    "ours+running4": "ablation: ours' 768 scaling configurations with targetRunningPerReplica 4",
    "ours+sampled": "ablation: ours' windowed configurations without a prefill target, with "
    "loadSignal sampled",
    "ours-default": "the API defaults (targetQueueDepth 4, running 8, no prefill target, last "
    "tick, peak, scale-up window 30 s, scale-down 300 s) for floors 1-16",
    "hpa-default": "target utilization 0.8, scale-down window 300 s, floors 1-16",
    "kubeai-default": "targetRequests 100, 10-minute average, scaleDownDelaySeconds 30, "
    "floors 1-16",
}


def _factory(cls: Any, *args: Any) -> Factory:
    return functools.partial(cls, *args)  # picklable, for the process pool


def ours_knobs(floor: int, down: float) -> list[dict[str, Any]]:
    """Ours' 16 scaling configurations at one floor and scale-down window."""
    out = []
    for (average, percentile), queues, prefill in (
        *((load, OURS_QUEUE, None) for load in OURS_LOADS),
        *((load, PREFILL_QUEUE, PREFILL_SHARE) for load in PREFILL_LOADS),
    ):
        for queue in queues:
            knobs: dict[str, Any] = {"floor": floor, "target_queue": queue}
            knobs["target_running"] = DEFAULT_RUNNING
            if prefill is not None:
                knobs["prefill_share"] = prefill
            knobs["average_s"] = average
            if percentile is not None:
                knobs["percentile"] = percentile
            knobs["down_window_s"] = down
            out.append(knobs)
    return out


def _ours(name: str, knobs: dict[str, Any], prefill_rate: float) -> Config:
    share = knobs.get("prefill_share")
    policy = dict(knobs)
    if share is not None:
        policy["target_prompt_tokens_s"] = round(share * prefill_rate)
    floor = knobs["floor"]
    return (name, knobs, floor, _factory(Ours, floor, MAX_REPLICAS, policy))


def sweep(quick: bool, interval: float, prefill_rate: float) -> list[Config]:
    """(policy, knobs, initial replicas, factory) for every configuration of every policy."""
    floors = [1, 4, 8, 12] if quick else list(FLOORS)
    windows = DOWN_WINDOWS[:1] if quick else DOWN_WINDOWS
    out: list[Config] = []
    for n in range(1, 31, 3 if quick else 1):
        out.append(("static", {"replicas": n}, n, _factory(Static, n)))
    for floor in floors:
        pinned: dict[str, Any] = {"floor": floor, "max": floor}
        out.append(("ours", pinned, floor, _factory(Ours, floor, floor, {})))
        out.append(("hpa", pinned, floor, _factory(Hpa, floor, 0.6, 300.0, floor)))
        kubeai_pinned = _factory(KubeAi, floor, 1.0, 600.0, interval, 30.0, floor)
        out.append(("kubeai", pinned, floor, kubeai_pinned))
        for down in windows:
            for knobs in ours_knobs(floor, down)[:: 4 if quick else 1]:
                out.append(_ours("ours", knobs, prefill_rate))
                out.append(
                    _ours(
                        "ours+running4", {**knobs, "target_running": ABLATION_RUNNING}, prefill_rate
                    )
                )
                if knobs["average_s"] and "prefill_share" not in knobs:
                    out.append(
                        _ours("ours+sampled", {**knobs, "load_signal": "sampled"}, prefill_rate)
                    )
            for target in HPA_TARGETS[::4] if quick else HPA_TARGETS:
                knobs = {"floor": floor, "target_util": target, "down_window_s": down}
                out.append(("hpa", knobs, floor, _factory(Hpa, floor, target, down)))
        for delay in KUBEAI_DELAYS[:2] if quick else KUBEAI_DELAYS:
            for target in KUBEAI_TARGETS[::3] if quick else KUBEAI_TARGETS:
                knobs = {"floor": floor, "target_in_flight": target, "down_delay_s": delay}
                factory = _factory(KubeAi, floor, target, 600.0, interval, delay)
                out.append(("kubeai", knobs, floor, factory))
        defaults: dict[str, Any] = {"floor": floor, "up_window_s": 30.0}
        out.append(_ours("ours-default", defaults, prefill_rate))
        hpa = {"floor": floor, "target_util": 0.8, "down_window_s": 300.0}
        out.append(("hpa-default", hpa, floor, _factory(Hpa, floor, 0.8, 300.0)))
        kubeai = {"floor": floor, "target_in_flight": 100.0, "down_delay_s": 30.0}
        factory = _factory(KubeAi, floor, 100.0, 600.0, interval, 30.0)
        out.append(("kubeai-default", kubeai, floor, factory))
    return out


_WORKER: dict[str, Any] = {}  # each pool worker's trace halves and SimConfig, sent once


def init_worker(halves: tuple[list[Request], list[Request]], sim: SimConfig) -> None:
    _WORKER.update(halves=halves, sim=sim)


def run_pair(job: Config) -> Pair:
    """One configuration on each half, each from a fresh policy and `initial` ready pods."""
    name, knobs, initial, factory = job
    first, second = _WORKER["halves"]
    sim = _WORKER["sim"]
    return (
        simulate(first, factory(), initial, sim, name, knobs),
        simulate(second, factory(), initial, sim, name, knobs),
    )
