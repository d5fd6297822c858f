"""Helpers for the gateway's tests: directory entries for stub replicas, a running gateway.

Kept out of conftest.py so tests import them by a name no other test folder uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from stub_upstream import StubReplica

from llm_gateway.app import GATEWAY, Gateway
from llm_gateway.directory import ModelTarget, Replica, StaticDirectory


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
