"""How busy each replica is: the gateway's own in-flight counts plus what the pods report.

A replica's load = requests this gateway has in flight to it now + the requests other clients
(other gateway replicas) had on it at the last scrape of its `/metrics` (`vllm:num_requests_waiting`
+ `vllm:num_requests_running` minus what this gateway had in flight then, so our own requests
count once). Replicas that refused a connection are marked failing for a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping

import aiohttp

from llm_gateway.directory import Directory, Replica

logger = logging.getLogger(__name__)

QUEUE_GAUGES = ("vllm:num_requests_waiting", "vllm:num_requests_running")


def parse_queue(metrics_text: str) -> int:
    """waiting + running from a Prometheus text exposition (summed over label sets)."""
    total = 0.0
    for line in metrics_text.splitlines():
        if not line.startswith(QUEUE_GAUGES):
            continue
        name_and_labels, _, rest = line.rpartition("}") if "}" in line else line.partition(" ")
        name = name_and_labels.split("{", 1)[0].strip()
        if name not in QUEUE_GAUGES:
            continue  # e.g. a longer name sharing the prefix
        fields = rest.split()
        with contextlib.suppress(IndexError, ValueError):
            total += float(fields[0])
    return int(total)


class LoadTracker:
    """Per-replica state the picker reads; keyed by replica URL (pod names may repeat across
    namespaces, URLs do not)."""

    def __init__(self, failing_seconds: float, clock: Callable[[], float] = time.monotonic):
        self._failing_seconds = failing_seconds
        self._clock = clock
        self._in_flight: dict[str, int] = {}
        self._others: dict[str, int] = {}  # scraped load that is not ours
        self._failing_until: dict[str, float] = {}

    def started(self, url: str) -> None:
        self._in_flight[url] = self._in_flight.get(url, 0) + 1

    def finished(self, url: str) -> None:
        left = self._in_flight.get(url, 0) - 1
        if left > 0:
            self._in_flight[url] = left
        else:
            self._in_flight.pop(url, None)

    def in_flight(self, url: str) -> int:
        return self._in_flight.get(url, 0)

    def scraped(self, url: str, queue: int) -> None:
        self._others[url] = max(0, queue - self.in_flight(url))

    def forget(self, url: str) -> None:
        self._others.pop(url, None)
        self._failing_until.pop(url, None)

    def mark_failing(self, url: str) -> None:
        self._failing_until[url] = self._clock() + self._failing_seconds

    def is_failing(self, url: str) -> bool:
        until = self._failing_until.get(url)
        return until is not None and self._clock() < until

    def loads(self, replicas: Iterable[Replica]) -> dict[str, int]:
        """pod -> load, for the picker."""
        return {r.pod: self.in_flight(r.url) + self._others.get(r.url, 0) for r in replicas}

    def failing_pods(self, replicas: Iterable[Replica]) -> set[str]:
        return {r.pod for r in replicas if self.is_failing(r.url)}

    def known_urls(self) -> set[str]:
        return set(self._others) | set(self._failing_until)


class LoadScraper:
    """Scrapes every serving replica's /metrics each interval, in parallel, each bounded."""

    def __init__(
        self,
        directory: Directory,
        tracker: LoadTracker,
        session: aiohttp.ClientSession,
        interval_seconds: float,
    ) -> None:
        self._directory = directory
        self._tracker = tracker
        self._session = session
        self._interval = interval_seconds
        self._timeout = aiohttp.ClientTimeout(total=min(1.0, interval_seconds))

    async def _scrape(self, url: str) -> None:
        try:
            async with self._session.get(f"{url}/metrics", timeout=self._timeout) as response:
                if response.status == 200:
                    self._tracker.scraped(url, parse_queue(await response.text()))
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.debug("scraping %s/metrics failed: %s", url, exc)

    async def scrape_once(self) -> None:
        urls = {r.url for t in self._directory.models() for r in t.serving()}
        for gone in self._tracker.known_urls() - urls:
            self._tracker.forget(gone)
        await asyncio.gather(*(self._scrape(url) for url in sorted(urls)))

    async def run(self) -> None:
        while True:
            await self.scrape_once()
            await asyncio.sleep(self._interval)


def replica_states(directory: Directory) -> Mapping[str, dict[str, int]]:
    """model -> state -> count, for the llm_gateway_replicas gauge."""
    counts: dict[str, dict[str, int]] = {}
    for target in directory.models():
        by_state = {"ready": 0, "not_ready": 0, "terminating": 0}
        for r in target.replicas:
            state = "terminating" if r.terminating else "ready" if r.ready else "not_ready"
            by_state[state] += 1
        counts[target.model] = by_state
    return counts
