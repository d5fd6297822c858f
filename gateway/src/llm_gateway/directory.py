"""What the gateway knows about models and their replicas: the directory the router reads.

Discovery fills it (KubeDirectory from LLMDeployments and EndpointSlices; StaticDirectory from a
file or from tests); the router, the holder and the load scraper only read it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Replica:
    pod: str  # pod name (metrics label)
    url: str  # "http://10.1.2.3:8000" (EndpointSlice address + the Service's target port)
    ready: bool  # EndpointSlice condition ready
    terminating: bool  # EndpointSlice condition terminating (draining): never picked


@dataclass(frozen=True)
class ModelTarget:
    model: str  # served model name (the request's `model`)
    namespace: str
    deployment: str  # LLMDeployment name
    replicas: tuple[Replica, ...]
    dollars_per_million_tokens: float | None = None  # status.cost: prices tenants' tokens
    budget_limited: bool = False  # its BudgetLimited condition is True: routes skip it
    # Requests one replica runs at once (batching.maxConcurrentSequences); beyond it the
    # model is saturated and requests wait in the gateway's fair queue. None: no limit.
    capacity_per_replica: int | None = None

    def serving(self) -> tuple[Replica, ...]:
        """Replicas a request may be sent to: ready and not draining."""
        return tuple(r for r in self.replicas if r.ready and not r.terminating)


def deployment_index(targets: Iterable[ModelTarget]) -> dict[tuple[str, str], ModelTarget]:
    """(namespace, LLMDeployment name) → its target: how a route names what it sends to."""
    return {(t.namespace, t.deployment): t for t in targets}


class Directory(Protocol):
    def get(self, model: str) -> ModelTarget | None: ...
    def models(self) -> list[ModelTarget]: ...
    # A route's targets by LLMDeployment: an index kept per change, not built per request.
    def deployment(self, namespace: str, name: str) -> ModelTarget | None: ...
    async def wait_changed(self, timeout: float) -> None: ...  # wake holders on any change
    async def signal_demand(self, target: ModelTarget) -> None: ...  # scale-from-zero stamp


class ChangeNotifier:
    """Wakes every waiter on the next change; a waiter returns on change or after `timeout`."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        # Waiters hold the old event; a fresh one serves the next round.
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait(self, timeout: float) -> None:
        event = self._event
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)


DemandCallback = Callable[[ModelTarget], Awaitable[None]]


class StaticDirectory:
    """An in-memory directory: `--static-models` files, `llmops up`'s local mode, and tests."""

    def __init__(
        self, targets: Iterable[ModelTarget] = (), on_demand: DemandCallback | None = None
    ) -> None:
        self._targets: dict[str, ModelTarget] = {t.model: t for t in targets}
        self._by_deployment = deployment_index(self._targets.values())
        self._changes = ChangeNotifier()
        self._on_demand = on_demand
        self.demand_signals: list[str] = []  # models, in the order demand was signalled

    def get(self, model: str) -> ModelTarget | None:
        return self._targets.get(model)

    def models(self) -> list[ModelTarget]:
        return sorted(self._targets.values(), key=lambda t: t.model)

    def deployment(self, namespace: str, name: str) -> ModelTarget | None:
        return self._by_deployment.get((namespace, name))

    async def wait_changed(self, timeout: float) -> None:
        await self._changes.wait(timeout)

    async def signal_demand(self, target: ModelTarget) -> None:
        self.demand_signals.append(target.model)
        if self._on_demand is not None:
            await self._on_demand(target)

    def put(self, target: ModelTarget) -> None:
        """Add or replace a model's target, and wake requests held for it."""
        self._targets[target.model] = target
        self._changed()

    def set_replicas(self, model: str, replicas: Iterable[Replica]) -> None:
        target = self._targets[model]
        self.put(dataclasses.replace(target, replicas=tuple(replicas)))

    def remove(self, model: str) -> None:
        if self._targets.pop(model, None) is not None:
            self._changed()

    def _changed(self) -> None:
        self._by_deployment = deployment_index(self._targets.values())
        self._changes.notify()
