"""The signal collector: scrapes the ready pods' /metrics over HTTP. The autoscale package's only
I/O (aiohttp, which kopf already brings); the policy and the parser stay pure.

Every pod is scraped concurrently with its own timeout, once per tick and never retried within
the tick: a pod that does not answer (refused, timeout, an error status, a page that is not an
llm-server's) becomes `PodSignals.failed`, whose load the policy treats as unknown, not idle.
The next attempt is the next tick, so a dead pod costs one request per interval, not a storm.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from llm_operator.autoscale.exposition import ExpositionError, pod_signals
from llm_operator.autoscale.signals import PodSignals

logger = logging.getLogger(__name__)
MAX_PAGE_BYTES = 4 * 1024 * 1024  # an llm-server page is ~20 KB; never buffer a runaway one


@dataclass(frozen=True)
class ScrapeTarget:
    """A ready pod and where its server listens (status.podIP, the container's `http` port)."""

    pod: str
    host: str | None
    port: int | None

    @property
    def url(self) -> str | None:
        if not self.host or not self.port:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6 pod IPs
        return f"http://{host}:{self.port}/metrics"


class Collector:
    """One HTTP session for all scrapes, opened on first use in the operator's event loop."""

    def __init__(self, timeout_seconds: float = 2.0) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    async def scrape(self, targets: Sequence[ScrapeTarget]) -> tuple[PodSignals, ...]:
        if not targets:
            return ()
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        session = self._session
        return tuple(await asyncio.gather(*(self._one(session, t) for t in targets)))

    async def _one(self, session: aiohttp.ClientSession, target: ScrapeTarget) -> PodSignals:
        url = target.url
        if url is None:
            logger.debug("pod %s has no IP or http port yet", target.pod)
            return PodSignals.failed(target.pod)
        try:
            async with session.get(url) as response:
                if response.status != 200:
                    raise ExpositionError(f"HTTP {response.status}")
                page = await response.content.read(MAX_PAGE_BYTES)
            return pod_signals(target.pod, page.decode("utf-8", errors="replace"))
        except (aiohttp.ClientError, TimeoutError, ExpositionError, OSError) as exc:
            logger.debug("scrape of %s (%s) failed: %s", target.pod, url, exc or type(exc))
            return PodSignals.failed(target.pod)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
