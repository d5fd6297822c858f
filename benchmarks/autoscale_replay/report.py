"""The report: JSON (one line per frontier run, a readable diff) and markdown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .analysis import GOAL_FRACTION, LEVELS, OPERATING_RANGE, SHOWN
from .sweep import ABLATIONS, DEFAULTS, DYNAMIC, SWEEP_TEXT

RUN_COLUMNS = [
    "policy",
    "knobs",
    "gpu_hours",
    "dollars",
    "slo_attainment",
    "ttft_p50_s",
    "ttft_p99_s",
    "scale_events",
    "peak_replicas",
]


def compact(row: dict[str, Any]) -> list[Any]:
    return [round(v, 5) if isinstance(v, float) else v for v in (row[c] for c in RUN_COLUMNS)]


def report_json(report: dict[str, Any]) -> str:
    """The report as JSON, indented, with one line per run (a readable diff)."""
    head = json.dumps({**report, "runs": []}, indent=2)
    rows = ",\n".join(f"    {json.dumps(row)}" for row in report["runs"])
    return head.replace('"runs": []', f'"runs": [\n{rows}\n  ]') + "\n"


def knob_text(knobs: dict[str, Any]) -> str:
    """`floor=6, target_queue=2, load_signal=sampled`: numbers in their shortest form."""
    return ", ".join(
        f"{k}={v:g}" if isinstance(v, float | int) else f"{k}={v}" for k, v in knobs.items()
    )


def _dollars(point: dict[str, Any] | None) -> str:
    return "never" if point is None else f"${point['dollars']:.2f}"


def _best(point: dict[str, Any] | None) -> str:
    if point is None:
        return "-"
    return f"{100 * point['slo_attainment']:.2f} % (${point['dollars']:.2f})"


def _levels_table(rows: dict[str, dict[str, Any]], names: tuple[str, ...]) -> list[str]:
    head = " | ".join(f"{100 * level:g} %" for level in LEVELS)
    lines = [f"| policy | {head} | highest reached |", "|---|" + "---:|" * (len(LEVELS) + 1)]
    for name in names:
        cells = " | ".join(_dollars(rows[name][f"{level:g}"]) for level in LEVELS)
        lines.append(f"| {name} | {cells} | {_best(rows[name]['best'])} |")
    return lines


def _goal_lines(goal: dict[str, Any]) -> list[str]:
    fraction = goal["ours_vs_static_at_99"]
    verdict = "met" if goal["reaches_99_at_75"] else "missed"
    if fraction is None:
        how = (
            f"ours or static never reaches 99 % here: the highest held-out SLO attainment is "
            f"{_best(goal['ours_best'])} for ours, {_best(goal['static_best'])} for static"
        )
    else:
        how = f"{100 * fraction:.1f} % of static's dollars at 99 %"
    lines = [
        f"- 99 % SLO attainment at <= {100 * GOAL_FRACTION:g} % of static-peak dollars: "
        f"**{verdict}** ({how})."
    ]
    for name, misses in goal["dearer_than_baseline_from_90"].items():
        if not misses:
            lines.append(
                f"- never dearer than {name} from {100 * OPERATING_RANGE:g} % up: **met**."
            )
            continue
        worst = max(
            (m["ours_dollars"] / m["baseline_dollars"] - 1 for m in misses if m["ours_dollars"]),
            default=0.0,
        )
        never = sum(1 for m in misses if m["ours_dollars"] is None)
        detail = "; ".join(
            f"{100 * m['slo_attainment']:.2f} %: {name} ${m['baseline_dollars']:.2f}, ours "
            + ("never" if m["ours_dollars"] is None else f"${m['ours_dollars']:.2f}")
            for m in misses
        )
        lines.append(
            f"- never dearer than {name} from {100 * OPERATING_RANGE:g} % up: **missed** at "
            f"{len(misses)} of its held-out frontier points, by up to {100 * worst:.1f} %"
            + (f" ({never} level(s) ours never reaches)" if never else "")
            + f": {detail}."
        )
    return lines


def _knob_lines(knobs: list[dict[str, Any]]) -> list[str]:
    head = " | ".join(f"{100 * level:g} %" for level in LEVELS)
    lines = [
        f"| field | configurations (default / swept) | {head} |",
        "|---|---|" + "---:|" * len(LEVELS),
    ]
    for knob in knobs:
        cells = " | ".join(
            f"{_dollars(knob['default'][f'{lv:g}'])} / {_dollars(knob['swept'][f'{lv:g}'])}"
            for lv in LEVELS
        )
        counts = knob["configurations"]
        lines.append(f"| {knob['field']} | {counts['default']} / {counts['swept']} | {cells} |")
    return lines


def markdown(report: dict[str, Any]) -> str:
    setup, mach, split = report["setup"], report["machine"], report["split"]
    cap = setup["capacity"]
    counts = report["configurations_per_policy"]
    lines = [
        "# Autoscaler replay (held-out)",
        "",
        f"{report['date']} · {mach['cpu']} · {mach['cores']} cores · Python {mach['python']} · "
        f"llm-operator {mach['llm_operator']} · matplotlib {mach['matplotlib']}",
        "",
        f"Trace: `{setup['trace']}` ({setup['requests']} requests over "
        f"{setup['trace_seconds']:.0f} s), time compression: {setup['time_compression']}. "
        f"Replica: {cap['source']}; prefill {cap['prefill_tokens_per_s']:.0f} tokens/s, decode "
        f"step {1000 * cap['decode_step_s']:.1f} ms + {1000 * cap['decode_step_per_seq_s']:.2f} "
        f"ms per sequence, {cap['max_concurrency']} concurrent sequences; "
        f"${setup['dollars_per_replica_hour']:.2f}/h per replica ({setup['accelerator']} "
        f"on-demand, catalog). Pod start delay {setup['start_delay_s']:g} s, control loop every "
        f"{setup['interval_s']:g} s, scrape failure rate {setup['scrape_failure_rate']:g}, "
        f"seed {setup['seed']}. SLO: TTFT under {setup['slo_ttft_s']:g} s.",
        "",
        "## Split and selection",
        "",
        f"The trace is cut at the middle of its span, t = {split['cut_s']:.0f} s: the **first "
        f"half** ({split['first_requests']} requests, 0-{split['cut_s']:.0f} s) and the "
        f"**second half** ({split['second_requests']} requests, {split['cut_s']:.0f}-"
        f"{setup['trace_seconds']:.0f} s, replayed from t = 0). Every configuration is "
        "replayed on each half separately, starting at its floor with ready pods. Two "
        "directions: **tune on the first half, evaluate on the second**, and **tune on the "
        "second, evaluate on the first**.",
        "",
        "Choosing a configuration on the tuning half means: the configurations on that "
        "policy's Pareto frontier (dollars vs SLO attainment) on the tuning half, ties "
        "included. The held-out frontier is the Pareto front of *those configurations only*, "
        "replayed on the other half. 'Cheapest at X %' below is the cheapest of them reaching "
        "X % on the held-out half. Dollars are for the half (about 29 minutes).",
        "",
        "## Configurations per policy",
        "",
        "| policy | configurations | knobs swept |",
        "|---|---:|---|",
        *[f"| {n} | {counts[n]} | {SWEEP_TEXT[n]} |" for n in (*DYNAMIC, "static")],
        *[f"| {n} | {counts[n]} | {SWEEP_TEXT[n]} |" for n in (*ABLATIONS, *DEFAULTS)],
        "",
        "Ours, HPA and KubeAI get the same number of configurations, the same floors 1-16 and "
        "scale-down windows 300, 450 and 600 s (KubeAI: delays, plus its 30 s default), and "
        "each runs pinned at every floor. The ablations and defaults are not candidates in the "
        "comparison; they answer 'what does this knob buy' and 'what does writing nothing get'.",
        "",
    ]
    for direction in report["directions"]:
        name = direction["direction"]
        lines += [
            f"## Held-out: {name}",
            "",
            "Cheapest held-out configuration reaching each SLO level (dollars for the half):",
            "",
            *_levels_table(direction["held_out_at_levels"], SHOWN),
            "",
            "Moonshot goal on this held-out half:",
            "",
            *_goal_lines(direction["goal"]),
            "",
            "Defaults (no knob set; the floor is the user's sizing, chosen on the tuning half "
            "like any knob):",
            "",
            *_levels_table(direction["held_out_at_levels"], DEFAULTS),
            "",
            "For contrast, in-sample (tuned on the evaluated half itself, what the old report "
            "did):",
            "",
            *_levels_table(direction["in_sample_at_levels"], SHOWN),
            "",
            "What each autoscaling field buys on held-out load: cheapest held-out dollars with "
            "the field at its default / swept:",
            "",
            *_knob_lines(direction["knobs"]),
            "",
        ]
    lines += [
        "![held-out frontiers](autoscale_replay_frontier.png)",
        "",
        "![load vs replicas](autoscale_replay_timeline.png)",
        "",
        "## Held-out frontier points",
        "",
        "| direction | policy | knobs | dollars | SLO attainment | TTFT p99 | scale events |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for direction in report["directions"]:
        arrow = "1st→2nd" if direction["tune_half"] == 0 else "2nd→1st"
        for name in (*SHOWN, *DEFAULTS):
            for r in direction["frontier"][name]:
                lines.append(
                    f"| {arrow} | {name} | {knob_text(r['knobs'])} | {r['dollars']:.2f} | "
                    f"{100 * r['slo_attainment']:.2f} % | {r['ttft_p99_s']:.2f} s | "
                    f"{r['scale_events']} |"
                )
    lines += ["", 'How to read this: docs/autoscaling.md, "The replay".', ""]
    return "\n".join(lines)


def for_json(report: dict[str, Any]) -> dict[str, Any]:
    """The report with each direction's frontier as compact rows under "runs" (tune half
    first), so that the JSON has one line per run."""
    directions = [{k: v for k, v in d.items() if k != "frontier"} for d in report["directions"]]
    runs = [
        [d["tune_half"], *compact(r)]
        for d in report["directions"]
        for rows in d["frontier"].values()
        for r in rows
    ]
    return {**report, "directions": directions, "run_columns": ["tune_half", *RUN_COLUMNS],
            "runs": runs}  # fmt: skip


def write(out_dir: Path, report: dict[str, Any]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "autoscale_replay.json").write_text(report_json(for_json(report)))
    (out_dir / "autoscale_replay.md").write_text(markdown(report))
