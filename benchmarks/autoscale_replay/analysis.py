"""What the report says, as data: each policy's held-out frontier in both directions, the
goal check, the defaults, and what each autoscaling knob buys on held-out load."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from .frontier import Pair, cheapest_at, dominance, held_out, pareto
from .simulator import Run

LEVELS = (0.5, 0.9, 0.95, 0.99, 0.999)
OPERATING_RANGE = 0.9  # SLO attainment from which a service is worth running
GOAL_LEVEL, GOAL_FRACTION = 0.99, 0.75  # ours at 99 % for <= 75 % of static-peak dollars
DIRECTIONS = (
    (0, "tune on the first half, evaluate on the second"),
    (1, "tune on the second half, evaluate on the first"),
)
SHOWN = ("ours", "static", "hpa", "kubeai")
BASELINES = ("static", "hpa", "kubeai")


def row(run: Run) -> dict[str, Any]:
    out = asdict(run)
    out.pop("timeline")
    return out


def _point(run: Run | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {"dollars": run.dollars, "slo_attainment": run.slo_attainment, "knobs": run.knobs}


def at_levels(front: Sequence[Run]) -> dict[str, dict[str, Any] | None]:
    """The cheapest run reaching each level, and under "best" the highest SLO reached."""
    out = {f"{level:g}": _point(cheapest_at(front, level)) for level in LEVELS}
    out["best"] = _point(front[-1] if front else None)
    return out


def _knob_default(name: str) -> Callable[[dict[str, Any]], bool]:
    """Whether a configuration of ours leaves `name` at its API default."""
    checks: dict[str, Callable[[dict[str, Any]], bool]] = {
        "targetPromptTokensPerSecond": lambda k: "prefill_share" not in k,
        "loadPercentile": lambda k: "percentile" not in k,
        "loadAverageSeconds": lambda k: not k.get("average_s"),
    }
    return checks[name]


def knob_value(pairs: dict[str, list[Pair]], tune: int) -> list[dict[str, Any]]:
    """Per field: the held-out frontier with the field at its default vs swept.

    Fields in ours' grid: the grid vs its configurations with the field at the default.
    Fields outside it (running target, load signal): the grid vs the grid plus an ablation
    that sweeps the field's other value.
    """
    ours = pairs["ours"]
    out = []
    for field in ("targetPromptTokensPerSecond", "loadPercentile", "loadAverageSeconds"):
        fixed = [p for p in ours if _knob_default(field)(p[0].knobs)]
        out.append(_compare(field, fixed, ours, tune))
    out.append(_compare("targetRunningPerReplica", ours, ours + pairs["ours+running4"], tune))
    out.append(_compare("loadSignal", ours, ours + pairs["ours+sampled"], tune))
    return out


def _compare(field: str, fixed: list[Pair], swept: list[Pair], tune: int) -> dict[str, Any]:
    fixed_front, swept_front = held_out(fixed, tune), held_out(swept, tune)
    return {
        "field": field,
        "configurations": {"default": len(fixed), "swept": len(swept)},
        "default": at_levels(fixed_front),
        "swept": at_levels(swept_front),
    }


def goal(front: dict[str, list[Run]]) -> dict[str, Any]:
    ours, static = cheapest_at(front["ours"], GOAL_LEVEL), cheapest_at(front["static"], GOAL_LEVEL)
    fraction = ours.dollars / static.dollars if ours and static else None
    dearer = {}
    for name in ("hpa", "kubeai"):
        dearer[name] = dominance(front["ours"], front[name], OPERATING_RANGE)
    return {
        "ours_best": _point(front["ours"][-1] if front["ours"] else None),
        "static_best": _point(front["static"][-1] if front["static"] else None),
        "ours_vs_static_at_99": fraction,
        "reaches_99_at_75": fraction is not None and fraction <= GOAL_FRACTION,
        "dearer_than_baseline_from_90": dearer,
        "never_dearer_from_90": not any(dearer.values()),
    }


def summarize(pairs: dict[str, list[Pair]]) -> list[dict[str, Any]]:
    """One summary per direction (tuning half, evaluated half)."""
    out = []
    for tune, text in DIRECTIONS:
        names = [n for n in pairs if not n.startswith("ours+")]
        front = {name: held_out(pairs[name], tune) for name in names}
        in_sample = {  # what tuning on the evaluated half itself would claim
            name: pareto(p[1 - tune] for p in pairs[name]) for name in SHOWN
        }
        out.append(
            {
                "tune_half": tune,
                "evaluate_half": 1 - tune,
                "direction": text,
                "held_out_at_levels": {name: at_levels(front[name]) for name in names},
                "in_sample_at_levels": {name: at_levels(f) for name, f in in_sample.items()},
                "goal": goal(front),
                "knobs": knob_value(pairs, tune),
                "frontier": {name: [row(r) for r in front[name]] for name in names},
            }
        )
    return out
