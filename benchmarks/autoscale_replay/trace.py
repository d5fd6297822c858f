"""The replayed requests: a trace file read into arrival-ordered requests, and its halves."""

from __future__ import annotations

import csv
import datetime
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TRACE = ROOT.parent / "shared" / "traces" / "azure-llm-2023-code.csv"


@dataclass(frozen=True)
class Request:
    arrival: float
    prompt: int
    output: int


def load_trace(path: Path, time_scale: float) -> list[Request]:
    """Requests in arrival order, t=0 at the first; time_scale < 1 compresses time."""
    rows = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            stamp = datetime.datetime.strptime(row["TIMESTAMP"][:26], "%Y-%m-%d %H:%M:%S.%f")
            rows.append((stamp, int(row["ContextTokens"]), max(1, int(row["GeneratedTokens"]))))
    rows.sort(key=lambda r: r[0])
    t0 = rows[0][0]
    return [Request((s - t0).total_seconds() * time_scale, p, g) for s, p, g in rows]


def halves(trace: list[Request]) -> tuple[list[Request], list[Request], float]:
    """The trace cut at the middle of its span: (first half, second half re-based to t=0, cut).

    Each half is replayed on its own from the policy's floor, so a configuration chosen on
    one half is judged on load it never saw (held-out), not on the tail of its tuning run.
    """
    cut = trace[-1].arrival / 2
    first = [r for r in trace if r.arrival < cut]
    second = [replace(r, arrival=r.arrival - cut) for r in trace if r.arrival >= cut]
    return first, second, cut
