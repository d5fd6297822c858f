"""Fixtures for the gateway's tests: stub replicas and a gateway on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from stub_upstream import StubReplica

from llm_gateway.app import GATEWAY, Gateway, build_app
from llm_gateway.directory import ModelTarget, Replica, StaticDirectory
from llm_gateway.settings import GatewaySettings


def replica_of(stub: StubReplica, *, ready: bool = True, terminating: bool = False) -> Replica:
    return Replica(pod=stub.name, url=stub.url, ready=ready, terminating=terminating)


def target(model: str, *replicas: Replica) -> ModelTarget:
    return ModelTarget(model=model, namespace="ns", deployment=f"{model}-deploy", replicas=replicas)


@dataclass
class RunningGateway:
    server: TestServer
    directory: StaticDirectory
    session: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    @property
    def core(self) -> Gateway:
        return self.server.app[GATEWAY]

    async def post(self, path: str, body: Any, **kwargs: Any) -> tuple[int, Any]:
        async with self.session.post(self.url + path, json=body, **kwargs) as response:
            return response.status, await response.json()

    async def metrics(self) -> str:
        async with self.session.get(self.url + "/metrics") as response:
            return await response.text()


@pytest.fixture
async def make_stub() -> AsyncIterator[Callable[..., Awaitable[StubReplica]]]:
    started: list[StubReplica] = []

    async def make(name: str, **kwargs: Any) -> StubReplica:
        stub = await StubReplica(name, **kwargs).start()
        started.append(stub)
        return stub

    yield make
    for stub in started:
        await stub.close()


@pytest.fixture
async def make_gateway() -> AsyncIterator[Callable[..., Awaitable[RunningGateway]]]:
    running: list[RunningGateway] = []

    async def make(directory: StaticDirectory, **settings: Any) -> RunningGateway:
        # A long scrape interval: tests feed load through in-flight counts unless they scrape.
        settings.setdefault("scrape_interval_seconds", 3600.0)
        app = build_app(GatewaySettings(**settings), directory)
        server = TestServer(app, host="127.0.0.1", handler_cancellation=True)
        await server.start_server()
        gateway = RunningGateway(server, directory, aiohttp.ClientSession())
        running.append(gateway)
        return gateway

    yield make
    for gateway in running:
        await gateway.session.close()
        await gateway.server.close()
