"""The autoscaler's side of the operator's memory: each LLMDeployment's next scrape of its
ready pods' /metrics and its ScalingMemory (stabilization windows, counter readings).

Memory only: a restarted operator starts with empty windows, so its first decisions hold the
current count until the windows refill.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from llm_operator.autoscale.collector import Collector, ScrapeTarget
from llm_operator.plan.observed import PodSummary, ScalingMemory, Scrape
from llm_operator.state.writes import Key


@dataclass
class AutoscalerClock:
    interval: float = 10.0
    collector: Collector = field(default_factory=Collector)
    memories: dict[Key, ScalingMemory] = field(default_factory=dict)
    next_scrape: dict[Key, float] = field(default_factory=dict)  # monotonic time

    def forget(self, key: Key) -> None:
        self.memories.pop(key, None)
        self.next_scrape.pop(key, None)

    def next_tick(self, key: Key) -> float:
        return self.next_scrape.get(key, 0.0)  # never scraped: due now

    async def scrape(self, key: Key, pods: Iterable[PodSummary]) -> Scrape | None:
        """The tick: each ready pod's /metrics, when due and there are ready pods (else None)."""
        if time.monotonic() < self.next_tick(key):
            return None
        self.next_scrape[key] = time.monotonic() + self.interval
        targets = [
            ScrapeTarget(p.name, p.ip, p.port)
            for p in sorted(pods, key=lambda p: p.name)
            if p.ready and not p.deleting
        ]
        if not targets:
            return None
        signals = await self.collector.scrape(targets)
        return Scrape(signals, time.monotonic())

    def memory(self, key: Key) -> ScalingMemory:
        return self.memories.get(key) or ScalingMemory()

    def remember(self, key: Key, memory: ScalingMemory | None) -> None:
        if memory is not None:
            self.memories[key] = memory

    async def close(self) -> None:
        await self.collector.close()
