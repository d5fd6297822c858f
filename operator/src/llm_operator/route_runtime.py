"""LLMRoutes in the operator: each route's status kept current, and the gateway scraped.

`RouteRuntime` is what the route handlers share through kopf's memo. A daemon per LLMRoute
(handlers.py) re-computes its status (route_status.py, pure) when an LLMDeployment or an
LLMRoute of its namespace changes, after each scrape of the gateway, and every resync
interval; it writes the status only when it changed. The LLMDeployments come from a kopf
index (no API reads); only the status patch and the gateway's EndpointSlices go to k8s.py.

`GatewayScraper` runs when the operator has --gateway-service: every interval it lists the
EndpointSlices of that Service, reads each ready gateway pod's /metrics (concurrently, each
with a timeout, never retried within the tick) and adds their route counters to the hour's
window (state/route_window.py), from which each route's `lastHour` is taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from pydantic import ValidationError

from llm_operator.api.route import LLMRoute
from llm_operator.k8s import ApiError, KubeApi
from llm_operator.route_status import DeploymentView, route_status, status_patch
from llm_operator.state.route_counters import RouteCounters, RouteKey, gateway_pod_urls
from llm_operator.state.route_counters import route_counters as parse_route_counters
from llm_operator.state.route_window import RouteWindow

logger = logging.getLogger(__name__)
MAX_PAGE_BYTES = 4 * 1024 * 1024


@dataclass
class RouteRuntime:
    api: KubeApi
    resync_seconds: float = 60.0
    window: RouteWindow | None = None  # None: no --gateway-service, no lastHour
    written: dict[RouteKey, dict[str, Any]] = field(default_factory=dict)
    events: dict[str, asyncio.Event] = field(default_factory=dict)  # namespace -> next wake
    closed: bool = False
    refused: set[tuple[RouteKey, int | None]] = field(default_factory=set)  # logged once

    def wake(self, namespace: str | None = None) -> None:
        """Wake the routes of a namespace (None: all of them)."""
        for ns in list(self.events) if namespace is None else [namespace]:
            event = self.events.pop(ns, None)
            if event is not None:
                event.set()

    def close(self) -> None:
        self.closed = True
        self.wake()

    def forget(self, key: RouteKey) -> None:
        self.written.pop(key, None)

    async def keep_status(
        self,
        body: Mapping[str, Any],
        stopped: Any,
        deployments: Callable[[str], Iterable[DeploymentView]],
    ) -> None:
        """A route's daemon: reconcile, wait for a wake (or the resync), again."""
        namespace = str(body["metadata"]["namespace"])
        while not stopped and not self.closed:
            woken = self.events.setdefault(namespace, asyncio.Event())  # before: no lost wake
            try:
                await self.reconcile(body, deployments(namespace))
            except ApiError as exc:
                logger.warning("status of LLMRoute %s/%s: %s", namespace,
                               body["metadata"]["name"], exc)  # fmt: skip
            await _first(woken.wait(), stopped.wait(), timeout=self.resync_seconds)

    async def reconcile(
        self, body: Mapping[str, Any], deployments: Iterable[DeploymentView]
    ) -> None:
        meta = body["metadata"]
        key: RouteKey = (str(meta["namespace"]), str(meta["name"]))
        try:
            route = LLMRoute.from_manifest(dict(body))
        except ValidationError as exc:  # the CRD admitted what pydantic refuses: say it once
            if (key, meta.get("generation")) not in self.refused:
                self.refused.add((key, meta.get("generation")))
                logger.warning("LLMRoute %s/%s is invalid: %s", *key, exc)
            return
        last_hour = self.window.last_hour(key, time.time()) if self.window else None
        views = {d.name: d for d in deployments}
        previous = self.written.get(key, body.get("status"))
        status = route_status(route, views, last_hour, previous, datetime.now(tz=UTC))
        patch = status_patch(previous, status)
        if patch is None:
            return
        await self.api.patch_route_status(*key, patch)
        self.written[key] = status


async def _first(*waits: Awaitable[Any], timeout: float) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


class GatewayScraper:
    """Scrapes llm-gateway's pods for route counters into a RouteWindow."""

    def __init__(
        self,
        api: KubeApi,
        service: tuple[str, str],
        window: RouteWindow,
        interval_seconds: float = 60.0,
        timeout_seconds: float = 5.0,
    ) -> None:
        self.api, self.service, self.window = api, service, window
        self.interval = interval_seconds
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    async def tick(self, now: float) -> int:
        """One scrape of every ready gateway pod; returns how many answered."""
        slices = await self.api.list_endpoint_slices(*self.service)
        urls = gateway_pod_urls(slices)
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        pages = await asyncio.gather(*(self._page(self._session, u) for u in urls.values()))
        answered = {pod: page for pod, page in zip(urls, pages, strict=True) if page is not None}
        self.window.add(now, answered)
        return len(answered)

    async def _page(
        self, session: aiohttp.ClientSession, url: str
    ) -> dict[RouteKey, RouteCounters] | None:
        try:
            async with session.get(url) as response:
                if response.status != 200:
                    raise aiohttp.ClientResponseError(
                        response.request_info, (), status=response.status
                    )
                text = (await response.content.read(MAX_PAGE_BYTES)).decode("utf-8", "replace")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            logger.debug("gateway scrape of %s failed: %s", url, exc or type(exc))
            return None
        return parse_route_counters(text)

    async def run(self, after_tick: Callable[[], None]) -> None:
        """Until cancelled: a tick every interval (a failed tick is logged and skipped)."""
        while True:
            try:
                await self.tick(time.time())
            except ApiError as exc:
                logger.warning("listing the gateway's EndpointSlices %s/%s: %s", *self.service, exc)
            except Exception:  # never let one bad tick end the scraping for good
                logger.exception("scraping the gateway %s/%s", *self.service)
            after_tick()
            await asyncio.sleep(self.interval)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
