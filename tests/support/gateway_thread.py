"""The real gateway (llm_gateway.app) in a thread with its own event loop, on 127.0.0.1 and a
free port, for tests and benchmarks that drive it from synchronous code (the openai client).

The directory is the caller's: a KubeDirectory on the real control plane, or a StaticDirectory
that the caller changes through `call` (its methods must run on the gateway's loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import httpx
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from llm_gateway.app import build_app
from llm_gateway.directory import Directory
from llm_gateway.metrics import GatewayMetrics
from llm_gateway.routes import RouteLookup
from llm_gateway.settings import GatewaySettings
from llm_gateway.tenants import TenantLookup

T = TypeVar("T")


@dataclass
class RunningGateway:
    url: str  # http://127.0.0.1:PORT
    directory: Directory
    metrics: GatewayMetrics
    loop: asyncio.AbstractEventLoop

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run `coroutine` on the gateway's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def sample(self, name: str, **labels: str) -> float:
        """A series of the gateway's /metrics (as Prometheus would scrape it); 0 if absent."""
        value = self.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    def samples(self, name: str) -> list[tuple[dict[str, str], float]]:
        """Every series of `name` on the gateway's /metrics endpoint."""
        text = httpx.get(self.url + "/metrics", timeout=10).text
        return [
            (dict(s.labels), s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == name
        ]


@contextlib.contextmanager
def running_gateway(
    directory: Directory,
    settings: GatewaySettings | None = None,
    tenants: TenantLookup | None = None,
    routes: RouteLookup | None = None,
) -> Iterator[RunningGateway]:
    """The gateway's app as `llm-gateway` serves it (AppRunner, client cancellation on);
    `tenants`: where API keys are looked up (e.g. a KubeTenants), None: all anonymous;
    `routes`: e.g. a KubeRoutes, None: no routes."""
    settings = replace(settings or GatewaySettings(kube=True), host="127.0.0.1")
    metrics = GatewayMetrics()
    started = threading.Event()
    stop: asyncio.Event | None = None
    found: dict[str, Any] = {}

    async def serve() -> None:
        nonlocal stop
        stop = asyncio.Event()
        app = build_app(settings, directory, metrics, tenants, routes)
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            found["url"] = f"http://127.0.0.1:{port}"
            found["loop"] = asyncio.get_running_loop()
            started.set()
            await stop.wait()
        finally:
            await runner.cleanup()

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:  # surfaced to the caller below
            found["error"] = exc
            started.set()

    thread = threading.Thread(target=run, name="llm-gateway", daemon=True)
    thread.start()
    started.wait(30)
    if "error" in found:
        raise found["error"]
    if "url" not in found:
        raise TimeoutError("the gateway did not start in 30 s")
    loop = found["loop"]
    try:
        yield RunningGateway(found["url"], directory, metrics, loop)
    finally:
        assert stop is not None
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
    if "error" in found:
        raise found["error"]
