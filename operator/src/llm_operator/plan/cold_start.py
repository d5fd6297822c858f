"""Cold start: pod created -> Ready, measured once per pod from the pods the operator indexes.
Pure.

The status carries the watermark (the last measured pod's Ready time and name), so a pod is
measured once across reconciles and operator restarts: pods turning Ready after it are new.
A pod that restarted is skipped (its Ready time is the restart's, not the cold start's).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from llm_operator.api.status import ColdStart
from llm_operator.plan.observed import PodSummary
from llm_operator.plan.timefmt import format_time, parse_time

RECENT_COLD_STARTS = 20  # the median is over this many most recent pods


@dataclass(frozen=True)
class ColdStarts:
    status: ColdStart | None  # status.coldStart
    measured: tuple[float, ...]  # seconds of the pods measured for the first time (histogram)


def measure_cold_starts(previous: ColdStart | None, pods: Sequence[PodSummary]) -> ColdStarts:
    """The previous status.coldStart updated with the pods that turned Ready since."""
    mark: tuple[datetime, str] | None = None
    if previous is not None and (marked := parse_time(previous.last_ready_time)) is not None:
        mark = (marked, previous.last_pod)
    fresh: list[tuple[datetime, str, float]] = []
    for pod in pods:
        seconds = pod.cold_start_seconds
        if seconds is None or pod.ready_since is None or pod.deleting:
            continue
        if mark is None or (pod.ready_since, pod.name) > mark:
            fresh.append((pod.ready_since, pod.name, round(seconds, 3)))
    if not fresh:
        return ColdStarts(previous, ())
    fresh.sort()
    measured = tuple(seconds for _, _, seconds in fresh)
    recent = [*(previous.recent_seconds if previous else []), *measured][-RECENT_COLD_STARTS:]
    last_ready, last_pod, last_seconds = fresh[-1]
    status = ColdStart(
        last_seconds=last_seconds,
        median_seconds=round(statistics.median(recent), 3),
        samples=(previous.samples if previous else 0) + len(measured),
        recent_seconds=recent,
        last_ready_time=format_time(last_ready),
        last_pod=last_pod,
    )
    return ColdStarts(status, measured)
