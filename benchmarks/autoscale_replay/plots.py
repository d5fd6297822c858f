"""The report's figures: held-out frontiers (dollars vs SLO attainment) and load vs replicas."""

from __future__ import annotations

from pathlib import Path

from .analysis import OPERATING_RANGE, SHOWN
from .report import knob_text
from .simulator import Run

COLORS = {"ours": "tab:green", "static": "tab:gray", "hpa": "tab:orange", "kubeai": "tab:blue"}


def plot_frontier(fronts: dict[str, dict[str, list[Run]]], level: float, path: Path) -> None:
    """One row per direction; left: the whole range, right: the operating range."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, grid = plt.subplots(len(fronts), 2, figsize=(11, 4.2 * len(fronts)), dpi=90)
    for axes, (direction, front) in zip(grid, fronts.items(), strict=True):
        operating = [r for name in SHOWN for r in front[name] if r.slo_attainment >= 0.9]
        for ax, zoom in zip(axes, (False, True), strict=True):
            for name in SHOWN:
                runs = front[name]
                ax.step(
                    [r.dollars for r in runs],
                    [100 * r.slo_attainment for r in runs],
                    where="post",
                    color=COLORS[name],
                    label=f"{name} (held-out frontier)",
                    linewidth=1.8,
                    marker=".",
                )
            ax.axhline(100 * level, color="black", linewidth=0.6, linestyle=":")
            ax.set_xlabel("dollars for the held-out half")
            ax.grid(alpha=0.3)
            if zoom and operating:
                ax.set_ylim(100 * OPERATING_RANGE, 100.2)
                ax.set_xlim(0.95 * min(r.dollars for r in operating), None)
                ax.set_title(f"{direction}: >= {100 * OPERATING_RANGE:g} %", fontsize=9)
            else:
                ax.set_ylim(0, 100.5)
                ax.set_ylabel("SLO attainment (%)")
                ax.set_title(direction, fontsize=9)
                ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_timelines(picked: dict[str, Run], interval: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(picked), 1, figsize=(8, 1.9 * len(picked)), dpi=90, sharex=True)
    top = max(r for run in picked.values() for _, _, r, _ in run.timeline) + 1
    for ax, (name, run) in zip(axes, picked.items(), strict=True):
        minutes = [t / 60 for t, _, _, _ in run.timeline]
        ax.fill_between(
            minutes,
            [a / interval for _, a, _, _ in run.timeline],
            step="pre",
            color="lightsteelblue",
            label="arrivals (req/s)",
        )
        ax.set_ylabel("req/s", fontsize=8)
        twin = ax.twinx()
        twin.step(
            minutes,
            [r for _, _, r, _ in run.timeline],
            color=COLORS[name],
            label="replicas (incl. starting)",
            linewidth=1.4,
        )
        twin.step(
            minutes,
            [r for _, _, _, r in run.timeline],
            color=COLORS[name],
            linestyle=":",
            label="ready",
            linewidth=1.0,
        )
        twin.set_ylabel("replicas", fontsize=8)
        twin.set_ylim(0, top)  # the same scale in every panel
        knobs = knob_text(run.knobs)
        ax.set_title(
            f"{name} ({knobs}): ${run.dollars:.2f}, SLO {100 * run.slo_attainment:.2f} %",
            fontsize=8,
        )
        if ax is axes[0]:
            twin.legend(loc="upper right", fontsize=7)
    axes[-1].set_xlabel("minutes")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
