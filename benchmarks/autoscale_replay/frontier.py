"""Frontier arithmetic: Pareto fronts, the cheapest run at an SLO level, dominance, and the
held-out selection (configurations chosen on one half of the trace, judged on the other)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .simulator import Run

# A configuration's two runs: on the trace's first half and on its second half.
Pair = tuple[Run, Run]


def pareto(runs: Iterable[Run]) -> list[Run]:
    """Configurations no other one beats on both dollars and SLO attainment, cheapest first."""
    front: list[Run] = []
    for run in sorted(runs, key=lambda r: (r.dollars, -r.slo_attainment)):
        if not front or run.slo_attainment > front[-1].slo_attainment:
            front.append(run)
    return front


def cheapest_at(runs: Iterable[Run], level: float) -> Run | None:
    able = [r for r in runs if r.slo_attainment >= level - 1e-12]
    return min(able, key=lambda r: r.dollars) if able else None


def dominance(ours: list[Run], baseline: list[Run], low: float = 0.0) -> list[dict[str, Any]]:
    """Baseline frontier points (SLO >= low) where ours needs more dollars for that level."""
    misses = []
    for point in pareto(baseline):
        if point.slo_attainment < low:
            continue
        mine = cheapest_at(ours, point.slo_attainment)
        if mine is None or mine.dollars > point.dollars + 1e-9:
            misses.append(
                {
                    "baseline": point.policy,
                    "knobs": point.knobs,
                    "slo_attainment": point.slo_attainment,
                    "baseline_dollars": point.dollars,
                    "ours_dollars": None if mine is None else mine.dollars,
                }
            )
    return misses


def chosen(pairs: Sequence[Pair], tune: int) -> list[Pair]:
    """The configurations a user tuning on half `tune` would pick: those on that half's
    frontier (ties on both dollars and SLO attainment included: nothing tells them apart)."""
    front = {(r.dollars, r.slo_attainment) for r in pareto(p[tune] for p in pairs)}
    return [p for p in pairs if (p[tune].dollars, p[tune].slo_attainment) in front]


def held_out(pairs: Sequence[Pair], tune: int) -> list[Run]:
    """The held-out frontier: the tuning half's frontier configurations, replayed on the other
    half, and the Pareto front of those runs only."""
    return pareto(p[1 - tune] for p in chosen(pairs, tune))
