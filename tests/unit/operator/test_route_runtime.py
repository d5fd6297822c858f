"""The route runtime's shell logic with a recording stand-in for k8s.py: a route's status is
written once and again only when it changes (lastHour removed when it goes), an invalid route
is skipped; the gateway scraper reads real HTTP pages on loopback, and a pod that errors or
does not answer is left out of the tick (the window diffs it against its last answer)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from llm_operator.route_runtime import GatewayScraper, RouteRuntime
from llm_operator.route_status import DeploymentView
from llm_operator.state.route_window import RouteWindow

KEY = ("chat", "assistant")


class FakeApi:
    def __init__(self, slices: list[dict[str, Any]] | None = None) -> None:
        self.patches: list[tuple[str, str, dict[str, Any]]] = []
        self.slices = slices or []

    async def patch_route_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.patches.append((namespace, name, patch))

    async def list_endpoint_slices(self, namespace: str, service: str) -> list[dict[str, Any]]:
        return self.slices


def _body(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "assistant", "namespace": "chat", "generation": 1},
            "spec": {"model": "assistant", **spec}}  # fmt: skip


async def test_status_written_once_then_only_on_change() -> None:
    api = FakeApi()
    routes = RouteRuntime(api, window=RouteWindow())  # type: ignore[arg-type]
    body = _body(targets=[{"deployment": "int4"}])
    views = [DeploymentView("int4", ready_replicas=1)]
    await routes.reconcile(body, views)
    await routes.reconcile(body, views)
    assert len(api.patches) == 1 and "lastHour" not in api.patches[0][2]
    assert routes.window is not None
    routes.window.add(0, {"gw": {}})
    routes.window.add(60, {"gw": {}})
    await routes.reconcile(body, views)  # two scrapes: lastHour appears (zero requests)
    assert api.patches[-1][2]["lastHour"]["requests"] == 0
    routes.window = None  # e.g. the operator restarted without --gateway-service
    await routes.reconcile(body, [DeploymentView("int4", ready_replicas=0)])
    last = api.patches[-1][2]
    assert last["lastHour"] is None and last["targets"][0]["ready"] is False


async def test_an_invalid_route_is_skipped() -> None:
    api = FakeApi()
    routes = RouteRuntime(api)  # type: ignore[arg-type]
    await routes.reconcile(_body(targets=[{"deployment": "a"}], cascade={"steps": ["a", "b"]}), [])
    assert api.patches == []


async def test_wake_reaches_every_waiter_of_the_namespace() -> None:
    routes = RouteRuntime(FakeApi(), resync_seconds=30)  # type: ignore[arg-type]
    event = routes.events.setdefault("chat", asyncio.Event())
    routes.wake("other")
    assert not event.is_set()
    routes.wake("chat")
    assert event.is_set() and "chat" not in routes.events  # the next wait gets a fresh one


PAGE = 'llm_gateway_route_requests_total{namespace="chat",route="assistant",outcome="served"} %d\n'


async def _serve(handler: Any) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_get("/metrics", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, int(runner.addresses[0][1])


@pytest.fixture
async def gateway_ports() -> AsyncIterator[tuple[int, int]]:
    """A gateway pod whose counter rises by 5 each scrape, and one answering 500."""
    scrapes = [0]

    async def good(_: web.Request) -> web.Response:
        scrapes[0] += 1
        return web.Response(text=PAGE % (5 * scrapes[0]))

    async def broken(_: web.Request) -> web.Response:
        return web.Response(status=500)

    (good_runner, good_port), (broken_runner, broken_port) = (
        await _serve(good),
        await _serve(broken),
    )
    yield good_port, broken_port
    await good_runner.cleanup()
    await broken_runner.cleanup()


def _slice(pod: str, port: int) -> dict[str, Any]:
    return {"ports": [{"name": "http", "port": port}],
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True},
                           "targetRef": {"name": pod}}]}  # fmt: skip


async def test_scraper_ticks_into_the_window(gateway_ports: tuple[int, int]) -> None:
    good, broken = gateway_ports
    api = FakeApi([_slice("gw-0", good), _slice("gw-1", broken), _slice("gw-2", 1)])  # 1: refused
    window = RouteWindow()
    scraper = GatewayScraper(api, ("ops", "gw"), window, timeout_seconds=2)  # type: ignore[arg-type]
    try:
        assert await scraper.tick(0) == 1  # the 500 and the refused pod are left out
        assert await scraper.tick(60) == 1
    finally:
        await scraper.close()
    assert set(window.samples) == {"gw-0"}
    hour = window.last_hour(KEY, 60)
    assert hour is not None and hour.requests == 5
