"""The autoscaling policy as tables: one decision per row, then whole trajectories."""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import replace
from typing import Any

import pytest

from llm_operator.autoscale import (
    Decision,
    DeploymentSignals,
    PodSignals,
    PolicyConfig,
    PolicyState,
    decide,
)
from llm_operator.catalog import default_catalog
from llm_operator.cost import replica_dollars_per_hour
from llm_operator.validation import validate_manifest

# min 1, max 10; a replica is full at 8 running, and 4 queued ask for one more.
BASE = PolicyConfig(
    min_replicas=1,
    max_replicas=10,
    target_queue_depth=4,
    target_running_per_replica=8,
    scale_up_stabilization_s=30,
    scale_down_stabilization_s=300,
)
NOW = 1000.0


def signals(
    current: int,
    pods: list[tuple[int, int]] | None = None,
    starting: int = 0,
    failed: int = 0,
) -> DeploymentSignals:
    """`pods`: (waiting, running) per answering ready pod; `failed` more that did not answer."""
    ready = [PodSignals(f"p{i}", waiting=w, running=r) for i, (w, r) in enumerate(pods or [])]
    ready += [PodSignals.failed(f"f{i}") for i in range(failed)]
    return DeploymentSignals(current_replicas=current, ready=tuple(ready), starting=starting)


def history(*points: tuple[float, int]) -> PolicyState:
    """Recommendations `seconds ago` -> replicas."""
    return PolicyState(tuple(sorted((NOW - ago, r) for ago, r in points)))


def steady(replicas: int, seconds: float = 300) -> PolicyState:
    """The same recommendation every 10 s for `seconds`."""
    return history(*[(float(ago), replicas) for ago in range(10, int(seconds) + 1, 10)])


CASES: list[tuple[str, DeploymentSignals, dict[str, Any], PolicyState, int, str | None, str]] = [
    # id, signals, config changes, history, desired, limit, text in the reason
    # --- steady load ---------------------------------------------------------------------------
    ("steady-full", signals(2, [(0, 8), (0, 8)]), {}, steady(2), 2, None, "hold at 2"),
    (
        "steady-half",
        signals(2, [(0, 4), (0, 4)]),
        {},
        history((100, 2), (10, 1)),
        2,
        "stabilization",
        "scale-down window",
    ),
    (
        "steady-small-queue",
        signals(3, [(1, 8), (1, 8), (1, 8)]),
        {},
        steady(4),
        4,
        None,
        "scale up 3->4",
    ),
    ("steady-rounding", signals(3, [(0, 7), (0, 7), (0, 7)]), {}, steady(3), 3, None, "want 3"),
    # --- bursts ------------------------------------------------------------------------------
    ("burst-sustained", signals(2, [(8, 8), (8, 8)]), {}, steady(6, 30), 6, None, "scale up 2->6"),
    (
        "burst-first-sample",
        signals(2, [(8, 8), (8, 8)]),
        {},
        steady(2),
        2,
        "stabilization",
        "waiting out the 30s scale-up window",
    ),
    (
        "burst-partly-seen",
        signals(2, [(8, 8), (8, 8)]),
        {},
        history((10, 4), (20, 5), (30, 6)),
        4,
        "stabilization",
        "scale-up window 30s allows 4",
    ),
    (
        "burst-no-up-window",
        signals(2, [(8, 8), (8, 8)]),
        {"scale_up_stabilization_s": 0},
        steady(2),
        6,
        None,
        "scale up 2->6",
    ),
    (
        "burst-step-limited",
        signals(2, [(40, 8), (40, 8)]),
        {},
        steady(22, 30),
        6,
        "step",
        "step limited to +4",
    ),
    (
        "burst-step-percent",
        signals(6, [(40, 8)] * 6),
        {},
        steady(30, 30),
        10,
        "max",
        "replicas.max=10",
    ),
    (
        "burst-step-doubles",
        signals(6, [(12, 8)] * 6),
        {"max_replicas": 100},
        steady(30, 30),
        12,
        "step",
        "step limited to +6",
    ),
    # --- idle and scale-down -------------------------------------------------------------------
    (
        "idle-after-quiet-window",
        signals(4, [(0, 0)] * 4),
        {},
        steady(0),
        2,
        "step",
        "step limited to -2",
    ),
    ("idle-at-min", signals(1, [(0, 0)]), {}, steady(0), 1, "min", "kept at replicas.min=1"),
    (
        "idle-recent-peak",
        signals(4, [(0, 0)] * 4),
        {},
        history((290, 4), (100, 0)),
        4,
        "stabilization",
        "300s scale-down window keeps 4",
    ),
    (
        "idle-peak-aged-out",
        signals(4, [(0, 0)] * 4),
        {},
        history((310, 4), (100, 3)),
        3,
        "stabilization",
        "scale-down window 300s keeps 3",
    ),
    (
        "idle-min-zero-floor",
        signals(2, [(0, 0)] * 2),
        {"min_replicas": 0},
        steady(0),
        1,
        "step",
        "scale down 2->1",
    ),
    (
        "down-no-window",
        signals(6, [(0, 8)] * 2 + [(0, 0)] * 4),
        {"scale_down_stabilization_s": 0},
        PolicyState(),
        3,
        "step",
        "step limited to -3",
    ),
    # --- pods starting: coming capacity --------------------------------------------------------
    (
        "starting-absorb-queue",
        signals(4, [(10, 8), (10, 8)], starting=2),
        {},
        steady(7, 30),
        4,
        "starting",
        "2 starting pod(s) will absorb the queue",
    ),
    (
        "starting-running-term-up",
        signals(3, [(4, 16), (4, 16)], starting=1),
        {},
        steady(6, 30),
        4,
        "starting",
        "scale up 3->4",
    ),
    (
        "starting-light-load",
        signals(3, [(0, 8)], starting=2),
        {},
        steady(3),
        3,
        "stabilization",
        "hold at 3",
    ),
    (
        "starting-only",
        signals(3, [], starting=3),
        {},
        steady(3),
        3,
        None,
        "no ready pod to measure",
    ),
    (
        "starting-idle-down",
        signals(4, [(0, 0)], starting=3),
        {},
        steady(0),
        2,
        "step",
        "scale down 4->2",
    ),
    # --- pods failing / scrape failures -------------------------------------------------------
    (
        "scrape-failed-holds-down",
        signals(3, [(0, 0), (0, 0)], failed=1),
        {},
        steady(0),
        3,
        "unknown-load",
        "1 pod(s) did not answer",
    ),
    (
        "scrape-failed-extrapolates-up",
        signals(2, [(8, 8)], failed=1),
        {},
        steady(6, 30),
        6,
        None,
        "scale up 2->6",
    ),
    (
        "scrape-all-failed",
        signals(3, failed=3),
        {},
        steady(0),
        3,
        "unknown-load",
        "no ready pod answered",
    ),
    (
        "scrape-failed-not-idle",
        signals(4, [(0, 0)], failed=3),
        {},
        steady(0),
        4,
        "unknown-load",
        "no scale-down on unknown load",
    ),
    ("pods-crashed-none-ready", signals(3), {}, steady(0), 3, None, "no ready pod to measure"),
    # --- max and budget -----------------------------------------------------------------------
    ("max-binds", signals(8, [(8, 8)] * 8), {}, steady(24, 30), 10, "max", "replicas.max=10"),
    (
        "above-max-after-spec-change",
        signals(12, [(0, 8)] * 12),
        {},
        steady(12),
        10,
        "max",
        "scale down 12->10",
    ),
    (
        "budget-binds",
        signals(2, [(8, 8), (8, 8)]),
        {"dollars_per_replica_hour": 1.10, "budget_dollars_per_hour": 3.30},
        steady(6, 30),
        3,
        "budget",
        "budget $3.30/h pays for 3 replica(s) at $1.10/h",
    ),
    (
        "budget-below-min",
        signals(4, [(0, 8)] * 4),
        {"min_replicas": 4, "dollars_per_replica_hour": 1.10, "budget_dollars_per_hour": 3.30},
        steady(4),
        3,
        "budget",
        "pays for 3",
    ),
    (
        "budget-ample",
        signals(2, [(8, 8), (8, 8)]),
        {"dollars_per_replica_hour": 1.10, "budget_dollars_per_hour": 100.0},
        steady(6, 30),
        6,
        None,
        "scale up 2->6",
    ),
    (
        "budget-without-price",
        signals(2, [(8, 8), (8, 8)]),
        {"budget_dollars_per_hour": 1.0},
        steady(6, 30),
        6,
        None,
        "scale up 2->6",
    ),
    (
        # At the cap with a pod still starting: step 2 holds the count, but what the load asks
        # for is still more than the budget pays for, so the budget is what binds.
        "budget-binds-while-pods-start",
        signals(3, [(10, 8), (10, 8)], starting=1),
        {"dollars_per_replica_hour": 1.10, "budget_dollars_per_hour": 3.30},
        steady(3, 30),
        3,
        "budget",
        "the load asks for 7; the budget pays for 3",
    ),
    (
        "max-binds-while-pods-start",
        signals(10, [(10, 8)] * 8, starting=2),
        {},
        steady(10, 30),
        10,
        "max",
        "replicas.max=10",
    ),
    (
        "budget-not-binding-below-the-cap-while-pods-start",
        signals(3, [(10, 8), (10, 8)], starting=1),
        {"dollars_per_replica_hour": 1.10, "budget_dollars_per_hour": 4.40},
        steady(3, 30),
        3,
        "starting",
        "will absorb the queue",
    ),
    (
        "budget-and-max-budget-wins",
        signals(8, [(8, 8)] * 8),
        {"dollars_per_replica_hour": 1.0, "budget_dollars_per_hour": 9.0},
        steady(24, 30),
        9,
        "budget",
        "pays for 9",
    ),
]


@pytest.mark.parametrize(
    ("sig", "changes", "state", "desired", "limit", "text"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_decision_table(
    sig: DeploymentSignals,
    changes: dict[str, Any],
    state: PolicyState,
    desired: int,
    limit: str | None,
    text: str,
) -> None:
    decision = decide(sig, replace(BASE, **changes), state, NOW)
    assert (decision.desired, decision.limit) == (desired, limit), decision.reason
    assert text in decision.reason
    assert decision.current == sig.current_replicas
    assert decision.state.recommendations[-1] == (NOW, decision.recommendation)


@pytest.mark.parametrize(
    ("pods", "expected"),
    [
        ([(0, 0)], 0),
        ([(0, 1)], 1),
        ([(0, 8)], 1),
        ([(0, 9)], 2),
        ([(1, 8)], 2),
        ([(4, 8)], 2),
        ([(5, 8)], 3),
        ([(0, 8), (0, 8), (0, 8)], 3),
        ([(12, 16), (12, 16)], 10),
    ],
)
def test_recommendation_formula(pods: list[tuple[int, int]], expected: int) -> None:
    """ceil(running / targetRunningPerReplica + waiting / targetQueueDepth)."""
    decision = decide(signals(len(pods), pods), BASE, PolicyState(), NOW)
    assert decision.recommendation == expected


def test_history_is_trimmed_to_the_longest_window() -> None:
    state = history((1000, 9), (301, 8), (299, 7), (5, 6))
    decision = decide(signals(2, [(0, 8), (0, 8)]), BASE, state, NOW)
    assert [r for _, r in decision.state.recommendations] == [7, 6, 2]


def test_more_load_never_asks_for_fewer_replicas() -> None:
    rng = random.Random(7)
    for _ in range(200):
        pods = [(rng.randrange(20), rng.randrange(20)) for _ in range(rng.randrange(1, 6))]
        more = [(w + rng.randrange(5), r + rng.randrange(5)) for w, r in pods]
        low = decide(signals(len(pods), pods), BASE, PolicyState(), NOW)
        high = decide(signals(len(pods), more), BASE, PolicyState(), NOW)
        assert high.recommendation >= low.recommendation


# --- trajectories: a tick every 10 s, the caller applying each decision ------------------------


def run(loads: list[tuple[int, int]], config: PolicyConfig, start: int = 1) -> list[Decision]:
    """Each tick every ready pod reports the same (waiting, running); decisions apply at once."""
    state, current, out = PolicyState(), start, []
    for tick, (waiting, running) in enumerate(loads):
        d = decide(signals(current, [(waiting, running)] * current), config, state, 10.0 * tick)
        state, current = d.state, d.desired
        out.append(d)
    return out


def changes(decisions: list[Decision]) -> list[tuple[float, int]]:
    return [(d.state.recommendations[-1][0], d.direction) for d in decisions if d.direction]


FLAPPING = {
    "alternate-every-tick": [(12, 8), (0, 0)] * 90,
    "alternate-every-minute": ([(12, 8)] * 6 + [(0, 0)] * 6) * 15,
    "alternate-every-5-minutes": ([(12, 8)] * 30 + [(0, 0)] * 30) * 3,
    "random": [
        (random.Random(3).randrange(16), random.Random(tick).randrange(16)) for tick in range(180)
    ],
    "bursty-random": [
        ((20, 8) if random.Random(tick).random() < 0.3 else (0, 1)) for tick in range(180)
    ],
}


@pytest.mark.parametrize("windows", [(30, 300), (0, 300), (60, 120), (30, 60)])
@pytest.mark.parametrize("pattern", sorted(FLAPPING))
def test_flapping_input_changes_direction_at_most_once_per_window(
    pattern: str, windows: tuple[int, int]
) -> None:
    up, down = windows
    config = replace(
        BASE, scale_up_stabilization_s=up, scale_down_stabilization_s=down, max_replicas=40
    )
    moves = changes(run(FLAPPING[pattern], config, start=2))
    for (before, old), (after, new) in itertools.pairwise(moves):
        if new != old:  # a reversal waits out the window of its new direction
            assert after - before >= (down if new < 0 else up), moves
    reversals = [t for (t, d), (_, e) in zip(moves[1:], moves, strict=False) if d != e]
    for first, second in itertools.pairwise(reversals):
        assert second - first >= min(up, down) or up == 0


def test_burst_then_idle_scales_up_holds_then_steps_down_to_min() -> None:
    loads = [(0, 2)] * 6 + [(16, 8)] * 12 + [(0, 0)] * 60
    decisions = run(loads, BASE)
    replicas = [d.desired for d in decisions]
    assert max(replicas) == BASE.max_replicas
    peak_at = replicas.index(BASE.max_replicas)
    first_down = next(i for i, d in enumerate(decisions) if d.direction < 0)
    last_high = max(i for i, (w, _) in enumerate(loads) if w)
    assert (first_down - last_high) * 10 >= BASE.scale_down_stabilization_s
    assert peak_at < first_down and replicas[-1] == BASE.min_replicas


def test_pods_starting_absorb_the_queue_they_were_ordered_for() -> None:
    """A burst orders pods; while they load, the growing queue orders no more."""
    config = replace(BASE, scale_up_stabilization_s=0, max_replicas=40)
    state, current, ready = PolicyState(), 2, 2
    orders = []
    for tick in range(9):  # 90 s: the new pods are still loading weights
        waiting = 10 + 10 * tick  # the queue keeps growing on the 2 ready pods
        sig = signals(current, [(waiting, 8)] * ready, starting=current - ready)
        d = decide(sig, config, state, 10.0 * tick)
        state, current = d.state, d.desired
        orders.append(d.desired)
    assert orders[0] > 2
    assert all(o == orders[0] for o in orders)
    ready = current  # they are up: the queue is still there, now it counts again
    d = decide(signals(current, [(40, 8)] * ready), config, state, 100.0)
    assert d.desired > current


@pytest.mark.parametrize("seed", range(5))
def test_never_exceeds_the_budget_whatever_the_load(seed: int) -> None:
    rng = random.Random(seed)
    config = replace(
        BASE, max_replicas=50, dollars_per_replica_hour=0.71, budget_dollars_per_hour=5.0
    )
    loads = [(rng.randrange(0, 60), rng.randrange(0, 16)) for _ in range(200)]
    decisions = run(loads, config)
    assert all(d.desired * 0.71 <= 5.0 + 1e-9 for d in decisions)
    assert any(d.limit == "budget" for d in decisions)


def test_config_from_spec(manifest: dict[str, Any]) -> None:
    manifest["spec"]["replicas"] = {"min": 2, "max": 6}
    manifest["spec"]["autoscaling"] = {
        "targetQueueDepth": 3,
        "scaleUpStabilizationSeconds": 15,
        "scaleDownStabilizationSeconds": 600,
        "budget": {"maxDollarsPerHour": 3.0},
    }
    resource, problems = validate_manifest(manifest)
    assert resource is not None, problems
    per_replica = replica_dollars_per_hour(default_catalog(), "L4", 1, "on-demand")
    config = PolicyConfig.from_spec(resource.spec, per_replica)
    assert (config.min_replicas, config.max_replicas) == (2, 6)
    assert (config.scale_up_stabilization_s, config.scale_down_stabilization_s) == (15, 600)
    assert config.target_queue_depth == 3
    assert config.target_running_per_replica == 8  # 64 concurrent sequences / 8
    # unset in the spec: the prefill term and load averaging stay off
    assert config.target_prompt_tokens_per_replica_s is None
    assert config.load_average_window_s == 0
    assert config.affordable == int(3.0 // per_replica)

    advanced = manifest["spec"]["autoscaling"].setdefault("advanced", {})
    advanced |= {"targetPromptTokensPerSecond": 3000, "loadAverageSeconds": 600}
    resource, problems = validate_manifest(manifest)
    assert resource is not None, problems
    config = PolicyConfig.from_spec(resource.spec, per_replica)
    assert config.target_prompt_tokens_per_replica_s == 3000
    assert config.load_average_window_s == 600
    assert config.load_percentile is None  # unset: the window's mean

    advanced["loadPercentile"] = 90
    resource, problems = validate_manifest(manifest)
    assert resource is not None, problems
    assert PolicyConfig.from_spec(resource.spec, per_replica).load_percentile == 90
    assert PolicyConfig.from_spec(resource.spec, per_replica).load_signal == "peak"  # default

    advanced["loadSignal"] = "sampled"
    resource, problems = validate_manifest(manifest)
    assert resource is not None, problems
    assert PolicyConfig.from_spec(resource.spec, per_replica).load_signal == "sampled"


@pytest.mark.parametrize(
    ("autoscaling", "batching", "running"),
    [
        ({}, {"maxConcurrentSequences": 128}, 16),  # unset: an eighth of the batch limit
        ({}, {"maxConcurrentSequences": 4}, 1),  # never below one request
        ({"advanced": {"targetRunningPerReplica": 3}}, {"maxConcurrentSequences": 128}, 3),
    ],
)
def test_running_target_from_spec(
    manifest: dict[str, Any],
    autoscaling: dict[str, Any],
    batching: dict[str, Any],
    running: float,
) -> None:
    manifest["spec"]["autoscaling"] = autoscaling
    manifest["spec"].setdefault("optimization", {})["batching"] = batching
    resource, problems = validate_manifest(manifest)
    assert resource is not None, problems
    config = PolicyConfig.from_spec(resource.spec)
    assert config.target_running_per_replica == running
    # the target decides: 6 running on one pod is 2 replicas' worth at a target of 3
    pods = (PodSignals("a", waiting=0, running=6),)
    decision = decide(DeploymentSignals(1, pods, 0), config, PolicyState(), 0.0)
    assert decision.recommendation == math.ceil(6 / running)


@pytest.mark.parametrize(
    "bad",
    [
        {"target_queue_depth": 0},
        {"target_running_per_replica": -1},
        {"load_signal": "loudest"},
        {"min_replicas": 5, "max_replicas": 4},
    ],
)
def test_config_rejects_nonsense(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        replace(BASE, **bad)


# --- the queue-time counter: bursts between two scrapes ---------------------------------------


def counted(name: str, waiting: int, running: int, queue_seconds: float) -> PodSignals:
    return PodSignals(name, waiting=waiting, running=running, queue_seconds_total=queue_seconds)


@pytest.mark.parametrize(
    ("before", "pod", "recommendation"),
    [
        # 80 queue-seconds in 10 s: 8 requests queued on average although none is queued now
        ((NOW - 10, 100.0), counted("a", 0, 8, 180.0), 3),
        # the gauge is larger than the average: the gauge wins
        ((NOW - 10, 100.0), counted("a", 12, 8, 110.0), 4),
        # counter went down (the pod restarted): no average this time
        ((NOW - 10, 100.0), counted("a", 0, 8, 5.0), 1),
        # first reading of this pod: no average yet
        (None, counted("a", 0, 8, 500.0), 1),
        # the server does not export the counter
        ((NOW - 10, 100.0), PodSignals("a", waiting=0, running=8), 1),
    ],
    ids=["burst-between-scrapes", "gauge-wins", "counter-reset", "first-reading", "no-counter"],
)
def test_queue_time_counter_averages_the_interval(
    before: tuple[float, float] | None, pod: PodSignals, recommendation: int
) -> None:
    state = PolicyState((), () if before is None else (("a", *before),))
    decision = decide(DeploymentSignals(1, (pod,)), BASE, state, NOW)
    assert decision.recommendation == recommendation, decision.reason
    if pod.queue_seconds_total is not None:
        assert decision.state.queue_counters == (("a", NOW, pod.queue_seconds_total),)


def test_sampled_load_signal_sees_the_gauges_alone() -> None:
    # The same burst between two scrapes: "peak" counts it, "sampled" (KubeAI's and KEDA's
    # view) does not, and keeps no counter readings.
    state = PolicyState((), (("a", NOW - 10, 100.0),), (("a", NOW - 10, 50.0),))
    pod = PodSignals("a", waiting=0, running=2, queue_seconds_total=180.0)
    pod = replace(pod, latency_seconds_total=50.0 + 80.0 + 160.0)  # 16 running on average
    signals = DeploymentSignals(1, (pod,))
    peak = decide(signals, BASE, state, NOW)
    sampled = decide(signals, replace(BASE, load_signal="sampled"), state, NOW)
    assert peak.recommendation == math.ceil(16 / 8 + 8 / 4)  # averages: 16 running, 8 queued
    assert sampled.recommendation == 1  # gauges: 2 running, none queued
    assert sampled.state.queue_counters == sampled.state.latency_counters == ()


def test_counters_follow_the_pods() -> None:
    state = PolicyState((), (("gone", NOW - 10, 5.0), ("silent", NOW - 10, 7.0)))
    sig = DeploymentSignals(2, (counted("new", 0, 0, 1.0), PodSignals.failed("silent")), starting=0)
    kept = decide(sig, BASE, state, NOW).state.queue_counters
    # a pod that left is forgotten; one that did not answer keeps its last reading
    assert kept == (("new", NOW, 1.0), ("silent", NOW - 10, 7.0))


# --- the latency counter: running requests averaged over the interval -------------------------


def timed(name: str, waiting: int, running: int, queue_s: float, latency_s: float) -> PodSignals:
    return PodSignals(
        name,
        waiting=waiting,
        running=running,
        queue_seconds_total=queue_s,
        latency_seconds_total=latency_s,
    )


@pytest.mark.parametrize(
    ("before", "pod", "recommendation"),
    [
        # 10 queue-seconds and 90 seconds in the server in 10 s: on average 1 queued and
        # 8 running, although the gauges read 0 and 0: ceil(8/8 + 1/4) = 2
        ((100.0, 200.0), timed("a", 0, 0, 110.0, 290.0), 2),
        # a burst of short requests between scrapes: 160 running-seconds in 10 s = 16 running
        ((100.0, 200.0), timed("a", 0, 0, 100.0, 360.0), 2),
        # the gauge is larger than the average: the gauge wins
        ((100.0, 200.0), timed("a", 0, 16, 100.0, 210.0), 2),
        # the latency counter went down (the pod restarted): no running average this time
        ((100.0, 200.0), timed("a", 0, 0, 110.0, 50.0), 1),
        # the queue counter went down: time in the server cannot be split, no running average
        ((100.0, 200.0), timed("a", 0, 0, 5.0, 290.0), 0),
        # first reading of this pod: no average yet
        (None, timed("a", 0, 0, 110.0, 290.0), 0),
    ],
    ids=[
        "queued-and-running-between-scrapes",
        "burst-between-scrapes",
        "gauge-wins",
        "latency-counter-reset",
        "queue-counter-reset",
        "first-reading",
    ],
)
def test_latency_counter_averages_running_over_the_interval(
    before: tuple[float, float] | None, pod: PodSignals, recommendation: int
) -> None:
    state = PolicyState()
    if before is not None:
        queue_before, latency_before = before
        state = PolicyState(
            (), (("a", NOW - 10, queue_before),), (("a", NOW - 10, latency_before),)
        )
    decision = decide(DeploymentSignals(1, (pod,)), BASE, state, NOW)
    assert decision.recommendation == recommendation, decision.reason
    assert decision.state.latency_counters == (("a", NOW, pod.latency_seconds_total),)
    if recommendation == 2 and pod.running == 0:
        assert "on average" in decision.reason


def test_latency_counter_alone_gives_no_running_average() -> None:
    """Without the queue counter, time in the server cannot be split into queued and running."""
    pod = PodSignals("a", running=1, latency_seconds_total=300.0)
    state = PolicyState((), (), (("a", NOW - 10, 100.0),))
    decision = decide(DeploymentSignals(1, (pod,)), BASE, state, NOW)
    assert decision.recommendation == 1  # the gauge: 1 running, not 20 on average
    assert decision.state.latency_counters == (("a", NOW, 300.0),)


def test_latency_counters_follow_the_pods() -> None:
    state = PolicyState((), (), (("gone", NOW - 10, 5.0), ("silent", NOW - 10, 7.0)))
    sig = DeploymentSignals(
        2, (timed("new", 0, 0, 1.0, 2.0), PodSignals.failed("silent")), starting=0
    )
    kept = decide(sig, BASE, state, NOW).state.latency_counters
    assert kept == (("new", NOW, 2.0), ("silent", NOW - 10, 7.0))


# --- the prefill term: prompt tokens per second against a per-replica target ------------------

PREFILL = replace(BASE, target_prompt_tokens_per_replica_s=2000)


def prompted(name: str, running: int, prompt_tokens: float, waiting: int = 0) -> PodSignals:
    return PodSignals(name, waiting=waiting, running=running, prompt_tokens_total=prompt_tokens)


@pytest.mark.parametrize(
    ("config", "before", "pod", "recommendation"),
    [
        # 60,000 prompt tokens in 10 s = 6,000/s: three replicas at 2,000/s each, although
        # one running request is far below the batch target of 8
        (PREFILL, 1000.0, prompted("a", 1, 61000.0), 3),
        # the batch is the tighter limit: 24 running want 3, 500 tokens/s want 1
        (PREFILL, 1000.0, prompted("a", 24, 6000.0), 3),
        # the prefill and queue terms add up: 3 for the prefill, 8 queued / 4 = 2 more
        (PREFILL, 1000.0, prompted("a", 1, 61000.0, waiting=8), 5),
        # without a prefill target the token rate is not a load signal
        (BASE, 1000.0, prompted("a", 1, 61000.0), 1),
        # the counter went down (pod restarted): no rate this time
        (PREFILL, 90000.0, prompted("a", 1, 61000.0), 1),
        # first reading of this pod: no rate yet
        (PREFILL, None, prompted("a", 1, 61000.0), 1),
    ],
    ids=["prefill-bound", "batch-bound", "plus-queue", "no-target", "counter-reset", "first"],
)
def test_prefill_term_from_the_prompt_token_counter(
    config: PolicyConfig, before: float | None, pod: PodSignals, recommendation: int
) -> None:
    prompt = () if before is None else (("a", NOW - 10, before),)
    state = PolicyState((), (), (), prompt)
    decision = decide(DeploymentSignals(1, (pod,)), config, state, NOW)
    assert decision.recommendation == recommendation, decision.reason
    assert decision.state.prompt_counters == (("a", NOW, pod.prompt_tokens_total),)


def test_prefill_load_orders_replicas_while_pods_start() -> None:
    """Prompt tokens being prefilled are load already served, like running requests: unlike the
    queue, they may order more than the starting pods bring."""
    pods = (prompted("a", 1, 80000.0, waiting=40), prompted("b", 1, 80000.0, waiting=40))
    state = PolicyState((), (), (), (("a", NOW - 10, 0.0), ("b", NOW - 10, 0.0)))
    config = replace(PREFILL, scale_up_stabilization_s=0, max_replicas=40)
    decision = decide(DeploymentSignals(5, pods, starting=3), config, state, NOW)
    assert decision.desired == 8  # 16,000 tokens/s at 2,000 per replica; the queue waits
    assert decision.limit == "starting"
    assert "starting pod(s) will absorb the queue" in decision.reason


def test_config_rejects_a_nonpositive_prefill_target() -> None:
    with pytest.raises(ValueError):
        replace(BASE, target_prompt_tokens_per_replica_s=0)
    with pytest.raises(ValueError):
        replace(BASE, load_average_window_s=-1)
    for percentile in (0, 101):
        with pytest.raises(ValueError):
            replace(BASE, load_average_window_s=600, load_percentile=percentile)


# --- load averaging: a sustained level instead of the last tick's snapshot --------------------

AVERAGED = replace(BASE, load_average_window_s=600, scale_up_stabilization_s=0)


def loads(
    value: float, seconds: float = 590, ago_from: float = 10
) -> tuple[tuple[float, float], ...]:
    return tuple((NOW - ago, value) for ago in range(int(seconds), int(ago_from) - 1, -10))


@pytest.mark.parametrize(
    ("past", "pods", "recommendation"),
    [
        # a burst after ten quiet minutes: 80 running = 10 replicas' worth, averaged over 60
        # samples is 1/6 of a replica
        (loads(0.0), [(0, 80)], 1),
        # ten minutes at 6 replicas' worth, then the same burst: (59 x 6 + 10) / 60 -> 7
        (loads(6.0), [(0, 80)], 7),
        # idle now after ten busy minutes: the average still wants 6
        (loads(6.0), [(0, 0)], 6),
        # samples older than the window are forgotten
        (tuple((NOW - ago, 30.0) for ago in (700, 650, 610)), [(0, 0)], 0),
        # no history yet: the load now
        ((), [(0, 80)], 10),
    ],
    ids=["burst-after-quiet", "burst-on-busy", "quiet-after-busy", "old-samples", "no-history"],
)
def test_load_averaged_over_the_window(
    past: tuple[tuple[float, float], ...], pods: list[tuple[int, int]], recommendation: int
) -> None:
    state = PolicyState(loads=past)
    decision = decide(signals(len(pods), pods), AVERAGED, state, NOW)
    assert decision.recommendation == recommendation, decision.reason
    kept = decision.state.loads
    assert kept[-1][0] == NOW and all(NOW - t < 600 for t, _ in kept)
    assert "averaged over 600s" in decision.reason


P90 = replace(AVERAGED, load_percentile=90)


def bursts(every: int, value: float) -> tuple[tuple[float, float], ...]:
    """Ten minutes of samples, quiet except every `every`-th, which carries `value`."""
    return tuple((t, value if n % every == 0 else 0.0) for n, (t, _) in enumerate(loads(0.0)))


@pytest.mark.parametrize(
    ("config", "past", "pods", "recommendation"),
    [
        # bursts of 8 replicas' worth on one tick in five, quiet now: the mean (12 x 8 / 60)
        # wants 2; the 90th percentile keeps the level the bursts keep reaching
        (AVERAGED, bursts(5, 8.0), [(0, 0)], 2),
        (P90, bursts(5, 8.0), [(0, 0)], 8),
        # one burst of 40 replicas' worth in ten quiet minutes: the mean still pays for a
        # replica of it; the 90th percentile does not, and neither does it for a burst now
        (AVERAGED, bursts(60, 40.0), [(0, 0)], 1),
        (P90, bursts(60, 40.0), [(0, 0)], 0),
        (P90, loads(0.0), [(0, 320)], 0),
        # the 100th percentile is the window's peak
        (replace(P90, load_percentile=100), bursts(60, 40.0), [(0, 0)], 40),
        # a steady level is the same by either
        (P90, loads(6.0), [(0, 48)], 6),
        # no history yet: the load now
        (P90, (), [(0, 80)], 10),
    ],
    ids=[
        "recurring-mean",
        "recurring-p90",
        "one-off-mean",
        "one-off-p90",
        "burst-now-p90",
        "p100-is-the-peak",
        "steady-p90",
        "no-history-p90",
    ],
)
def test_load_percentile_over_the_window(
    config: PolicyConfig,
    past: tuple[tuple[float, float], ...],
    pods: list[tuple[int, int]],
    recommendation: int,
) -> None:
    decision = decide(signals(len(pods), pods), config, PolicyState(loads=past), NOW)
    assert decision.recommendation == recommendation, decision.reason
    statistic = "averaged" if config.load_percentile is None else f"p{config.load_percentile}"
    assert f"{statistic} over 600s" in decision.reason


def test_without_a_load_window_no_loads_are_kept() -> None:
    decision = decide(signals(1, [(0, 80)]), BASE, PolicyState(loads=loads(6.0)), NOW)
    assert decision.recommendation == 10 and decision.state.loads == ()


@pytest.mark.parametrize("pattern", sorted(FLAPPING))
def test_flapping_input_with_load_averaging_changes_direction_once_per_window(
    pattern: str,
) -> None:
    config = replace(
        BASE,
        scale_up_stabilization_s=30,
        scale_down_stabilization_s=300,
        load_average_window_s=120,
        max_replicas=40,
    )
    moves = changes(run(FLAPPING[pattern], config, start=2))
    for (before, old), (after, new) in itertools.pairwise(moves):
        if new != old:
            assert after - before >= (300 if new < 0 else 30), moves
