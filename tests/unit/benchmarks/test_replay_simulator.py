"""The autoscaler replay's simulator and frontier arithmetic (benchmarks/autoscale_replay/).

The replay's verdict (does our frontier dominate on held-out load?) is only as good as these
parts: a replica's time to first token, pod start delay and drain in the dollars, determinism
for a seed, equal sweep budgets, the trace halves, and the Pareto / cheapest-at / dominance /
held-out bookkeeping. Small hand-made traces, milliseconds each.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from llm_operator.api.spec import LLMDeploymentSpec
from llm_operator.autoscale import PolicyConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
import autoscale_replay as replay

CAP = replay.Capacity(prefill_tokens_per_s=1000.0, prefill_overhead_s=0.0)
SIM = replay.SimConfig(CAP, dollars_per_replica_hour=3.6, scrape_failure_rate=0.0)


def request(at: float, prompt: int = 1000, output: int = 1) -> replay.Request:
    return replay.Request(arrival=at, prompt=prompt, output=output)


def run(trace: list[replay.Request], policy: replay.Policy, initial: int, **sim: float):
    config = replace(SIM, **sim)
    return replay.simulate(trace, policy, initial, config, "test", {})


def test_first_token_is_queueing_plus_own_prefill() -> None:
    # two 1,000-token prompts at once on one replica prefilling 1,000 tokens/s: 1 s and 2 s
    result = run([request(5.0), request(5.0)], replay.Static(1), 1, slo_ttft_s=1.5)
    assert result.slo_attainment == pytest.approx(0.5)
    assert (result.ttft_p50_s, result.ttft_p99_s) == pytest.approx((1.0, 2.0))


def test_the_gateway_spreads_a_burst_over_ready_replicas() -> None:
    result = run([request(5.0), request(5.0)], replay.Static(2), 2, slo_ttft_s=1.5)
    assert result.slo_attainment == 1.0


def test_a_new_pod_costs_from_its_order_and_serves_after_the_start_delay() -> None:
    class OneMore:
        def __call__(self, tick: replay.Tick) -> int:
            return 2 if tick.now >= 10 else 1

    trace = [request(5.0), request(50.0), request(150.0, prompt=10)]
    base = run(trace, replay.Static(1), 1, start_delay_s=90.0)
    grown = run(trace, OneMore(), 1, start_delay_s=90.0)
    # the second pod was ordered at t=10 and lives to the end of the run: its GPU time is
    # the run's end minus 10 s, starting seconds included
    assert grown.gpu_hours - base.gpu_hours == pytest.approx((base.gpu_hours * 3600 - 10) / 3600)
    assert grown.dollars == pytest.approx(grown.gpu_hours * 3.6)
    assert grown.scale_events == 1 and grown.peak_replicas == 2
    # ready at t=100: the timeline counts it from then, not from its order
    ready = {t: r for t, _, _, r in grown.timeline}
    assert (ready[90.0], ready[100.0]) == (1, 2)


def test_requests_wait_at_the_gateway_while_no_replica_is_ready() -> None:
    # no replica at t=0; the policy orders one, ready 30 s later: the request waits for it
    result = run([request(1.0)], replay.Static(1), 0, start_delay_s=30.0)
    assert result.ttft_p50_s == pytest.approx(40.0 - 1.0 + 1.0)  # ordered at 10, ready 40


def test_the_simulation_is_deterministic_for_a_seed() -> None:
    trace = [request(float(t), prompt=1200 + 97 * (t % 11)) for t in range(600)]  # ~1.7 pods

    def ours() -> replay.Ours:
        return replay.Ours(1, 8, {"target_queue": 1.0, "average_s": 120.0, "percentile": 90})

    first = run(trace, ours(), 1, scrape_failure_rate=0.2, seed=7)
    again = run(trace, ours(), 1, scrape_failure_rate=0.2, seed=7)
    assert (first.dollars, first.slo_attainment, first.timeline) == (
        again.dollars,
        again.slo_attainment,
        again.timeline,
    )
    assert first.scale_events > 0  # the policy did act on this trace


def test_ours_is_the_operators_policy_with_the_knobs_given() -> None:
    policy = replay.Ours(
        3, 9, {"target_queue": 2.0, "target_prompt_tokens_s": 2500, "average_s": 600.0,
               "percentile": 90, "down_window_s": 450.0},
    )  # fmt: skip
    config = policy.config
    assert (config.min_replicas, config.max_replicas, config.target_queue_depth) == (3, 9, 2.0)
    assert config.target_prompt_tokens_per_replica_s == 2500
    assert (config.load_average_window_s, config.load_percentile) == (600.0, 90)
    assert (config.scale_up_stabilization_s, config.scale_down_stabilization_s) == (0.0, 450.0)


def point(policy: str, dollars: float, slo: float) -> replay.Run:
    return replay.Run(policy, {"d": dollars}, dollars, dollars, slo, 0.0, 0.0, 0, 1)


def test_pareto_keeps_what_nothing_beats_on_both_axes() -> None:
    runs = [point("x", 1, 0.5), point("x", 2, 0.4), point("x", 2, 0.9), point("x", 3, 0.9)]
    assert [(r.dollars, r.slo_attainment) for r in replay.pareto(runs)] == [(1, 0.5), (2, 0.9)]


def test_cheapest_at_a_level() -> None:
    runs = [point("x", 1, 0.5), point("x", 3, 0.99), point("x", 2, 0.95)]
    assert replay.cheapest_at(runs, 0.9).dollars == 2
    assert replay.cheapest_at(runs, 0.999) is None


def test_dominance_lists_the_baseline_points_ours_cannot_match() -> None:
    ours = [point("ours", 1, 0.5), point("ours", 4, 0.99)]
    baseline = [point("b", 1, 0.5), point("b", 3, 0.95), point("b", 5, 1.0)]
    misses = replay.dominance(ours, baseline)
    # equal dollars at 50 % is no miss; 95 % costs ours 4 > 3; 100 % ours never reaches
    assert [(m["slo_attainment"], m["ours_dollars"]) for m in misses] == [(0.95, 4), (1.0, None)]
    assert replay.dominance(ours, baseline, low=0.96) == misses[1:]


def test_every_dynamic_policy_gets_the_same_budget_floors_and_windows() -> None:
    # The verdict compares frontiers, so a grid that favoured ours would decide it: ours, HPA
    # and KubeAI get the same number of configurations (at most 800), the same floors and
    # scale-down windows (KubeAI also its 30 s default), and each runs pinned at every floor.
    configs = replay.sweep(quick=False, interval=10.0, prefill_rate=5500.0)
    counts = Counter(name for name, *_ in configs)
    assert counts["ours"] == counts["hpa"] == counts["kubeai"] == replay.BUDGET <= 800
    floors: dict[str, set[float]] = {}
    windows: dict[str, set[float]] = {}
    pinned: dict[str, set[float]] = {}
    for name, knobs, initial, _ in configs:
        if name not in replay.DYNAMIC:
            continue
        assert initial == knobs["floor"]
        if "max" in knobs:
            pinned.setdefault(name, set()).add(knobs["floor"])
            continue
        floors.setdefault(name, set()).add(knobs["floor"])
        window = knobs.get("down_window_s", knobs.get("down_delay_s"))
        windows.setdefault(name, set()).add(window)
    assert floors["ours"] == floors["hpa"] == floors["kubeai"] == set(replay.FLOORS)
    assert pinned["ours"] == pinned["hpa"] == pinned["kubeai"] == set(replay.FLOORS)
    assert windows["ours"] == windows["hpa"] == set(replay.DOWN_WINDOWS)
    assert windows["kubeai"] == {30.0, *replay.DOWN_WINDOWS}
    knobs = [k for name, k, *_ in configs if name == "ours"]
    assert len({json.dumps(k, sort_keys=True) for k in knobs}) == len(knobs)  # no duplicates


def test_the_defaults_are_what_writing_nothing_gets() -> None:
    # ours-default runs the API's defaults (PolicyConfig's, scale-up window included);
    # HPA at 80 % utilization; KubeAI at 100 requests in flight, 10-minute average, 30 s delay.
    configs = replay.sweep(quick=False, interval=10.0, prefill_rate=5500.0)
    ours = [f() for name, _, _, f in configs if name == "ours-default"]
    assert len(ours) == len(replay.FLOORS)
    # what the operator builds from a spec that sets nothing under autoscaling
    spec = LLMDeploymentSpec.model_validate(
        {
            "model": {"uri": "hf://org/model", "parameterCount": "8B"},
            "accelerator": {"type": "L40S"},
        }
    )
    written_nothing = PolicyConfig.from_spec(spec)
    for policy in ours:
        floor = policy.config.min_replicas
        bounds = {"min_replicas": floor, "max_replicas": replay.MAX_REPLICAS}
        assert policy.config == replace(written_nothing, **bounds)
    kubeai = [k for name, k, *_ in configs if name == "kubeai-default"]
    assert {(k["target_in_flight"], k["down_delay_s"]) for k in kubeai} == {(100.0, 30.0)}
    hpa = [k for name, k, *_ in configs if name == "hpa-default"]
    assert {(k["target_util"], k["down_window_s"]) for k in hpa} == {(0.8, 300.0)}


def test_the_halves_split_the_span_and_start_at_zero() -> None:
    trace = [request(0.0), request(40.0), request(50.0), request(100.0)]
    first, second, cut = replay.halves(trace)
    assert cut == 50.0
    assert [r.arrival for r in first] == [0.0, 40.0]
    assert [r.arrival for r in second] == [0.0, 50.0]


def test_held_out_keeps_the_tuning_frontier_and_judges_it_on_the_other_half() -> None:
    # (first half, second half) per configuration: b is beaten on the first half, so tuning
    # there never picks it, however good it is on the second.
    a = (point("x", 1, 0.9), point("x", 2, 0.8))
    b = (point("x", 2, 0.8), point("x", 1, 0.99))
    c = (point("x", 3, 0.95), point("x", 3, 0.9))
    tie = (point("x", 1, 0.9), point("x", 1.5, 0.85))  # ties a on the first half: kept
    pairs = [a, b, c, tie]
    assert replay.chosen(pairs, tune=0) == [a, c, tie]
    held = replay.held_out(pairs, tune=0)
    assert [(r.dollars, r.slo_attainment) for r in held] == [(1.5, 0.85), (3, 0.9)]
    # tuned on the second half, b beats everything there: its first-half run is all that's left
    assert [(r.dollars, r.slo_attainment) for r in replay.held_out(pairs, tune=1)] == [(2, 0.8)]


def test_the_json_report_keeps_one_line_per_run_and_reads_back() -> None:
    report = {"summary": {"level": 0.99}, "runs": [["ours", {"floor": 1}, 1.0], ["hpa", {}, 2.0]]}
    text = replay.report_json(report)
    assert json.loads(text) == report
    assert '    ["ours", {"floor": 1}, 1.0],\n    ["hpa", {}, 2.0]\n' in text


def test_knob_text_prints_numbers_short_and_words_as_they_are() -> None:
    knobs = {
        "floor": 6,
        "target_queue": 2.0,
        "target_prompt_tokens_s": 2750,
        "load_signal": "sampled",
    }
    assert replay.knob_text(knobs) == (
        "floor=6, target_queue=2, target_prompt_tokens_s=2750, load_signal=sampled"
    )
