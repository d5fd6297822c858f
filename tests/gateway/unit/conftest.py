"""Fixtures for the gateway's tests: stub replicas and a gateway on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from gateway_testing import RunningGateway
from stub_upstream import StubReplica

from llm_gateway.app import build_app
from llm_gateway.directory import StaticDirectory
from llm_gateway.settings import GatewaySettings


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
