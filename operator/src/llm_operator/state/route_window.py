"""The last hour of llm-gateway's route counters, per route. Pure (the caller passes `now`).

The operator scrapes every gateway pod's /metrics each interval and adds the pages here; a
route's `lastHour` is the increase of its counters over the samples of the last hour, summed
over the pods. Per pod and route, consecutive samples give the increase (a counter that went
down was reset by a restart: all of its value is new); a route first seen on a pod after that
pod's first sample started from zero. A pod's first sample is only a baseline: what it counted
before the operator first saw it is not in the window (as with Prometheus' increase()).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field

from llm_operator.api.route import LastHour
from llm_operator.state.route_counters import RouteCounters, RouteKey

HOUR_SECONDS = 3600.0
Page = Mapping[RouteKey, RouteCounters]


@dataclass
class RouteWindow:
    horizon_seconds: float = HOUR_SECONDS
    # pod -> [(time, that pod's counters by route)], oldest first
    samples: dict[str, list[tuple[float, dict[RouteKey, RouteCounters]]]] = field(
        default_factory=dict
    )

    def add(self, now: float, pages: Mapping[str, Page]) -> None:
        """One scrape: each answering pod's counters (a pod that did not answer is absent)."""
        for pod, page in pages.items():
            self.samples.setdefault(pod, []).append((now, dict(page)))
        for pod in list(self.samples):
            kept = [s for s in self.samples[pod] if s[0] >= now - self.horizon_seconds]
            if kept:
                self.samples[pod] = kept
            else:
                del self.samples[pod]

    def covered_seconds(self, now: float) -> float:
        """How much of the horizon the samples span (0 until two scrapes)."""
        times = [t for pod in self.samples.values() for t, _ in pod]
        return min(now, max(times)) - min(times) if times else 0.0

    def increase(self, key: RouteKey) -> RouteCounters:
        total = RouteCounters()
        for series in self.samples.values():
            for (_, before), (_, after) in itertools.pairwise(series):
                if key in after:
                    total = total.plus(after[key].increase_since(before.get(key, RouteCounters())))
        return total

    def last_hour(self, key: RouteKey, now: float) -> LastHour | None:
        """None until two scrapes span some time (nothing to take an increase over)."""
        covered = self.covered_seconds(now)
        if covered <= 0:
            return None
        counted = self.increase(key)
        requests = round(counted.requests)
        return LastHour(
            requests=requests,
            escalation_rate=round(counted.escalations / requests, 4) if requests else None,
            dollars=round(counted.dollars, 6),
            direct_dollars=round(counted.direct_dollars, 6),
            window_seconds=round(covered),
        )
