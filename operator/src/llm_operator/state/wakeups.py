"""When each LLMDeployment's daemon re-evaluates: woken by its children's and pods' events,
by a new demand stamp from the gateway, at a requeue the plan asked for, at the autoscaler's
next tick, or every resync interval."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from llm_operator.state.writes import Key


@dataclass
class Wakeups:
    resync_seconds: float = 60.0
    events: dict[Key, asyncio.Event] = field(default_factory=dict)
    due: dict[Key, float] = field(default_factory=dict)  # monotonic time a requeue is due
    last_reconciled: dict[Key, float] = field(default_factory=dict)  # monotonic time
    closed: bool = False  # set on operator cleanup: daemons spawned late must exit too
    demand: dict[Key, str] = field(default_factory=dict)  # the last demand stamp seen

    def forget(self, key: Key) -> None:
        self.due.pop(key, None)
        self.last_reconciled.pop(key, None)
        self.demand.pop(key, None)

    def close(self) -> None:
        self.closed = True
        for event in self.events.values():
            event.set()

    def wake(self, key: Key) -> None:
        event = self.events.get(key)
        if event is not None:
            event.set()

    def wake_on_new_demand(self, key: Key, stamp: str | None) -> None:
        """Wake when the gateway's demand annotation (api.demand) changed: requests wait at
        zero replicas. kopf's update handler never sees it: kopf leaves every annotation under
        its storage prefix (ours, inference.llmops.dev/) out of the diff it handles."""
        if stamp and self.demand.get(key) != stamp:
            self.demand[key] = stamp
            self.wake(key)

    def requeue(self, key: Key, after: float | None) -> None:
        if after is not None:
            self.due[key] = time.monotonic() + after
        else:
            self.due.pop(key, None)

    def reconciled(self, key: Key) -> None:
        self.last_reconciled[key] = time.monotonic()

    def timeout(self, key: Key, also_at: float) -> float:
        """Seconds until a requeue, `also_at` (monotonic) or a resync is due."""
        now, timeout = time.monotonic(), self.resync_seconds
        due = self.due.get(key)
        if due is not None:
            timeout = max(min(timeout, due - now), 0.0)
        return max(min(timeout, also_at - now), 0.0)

    async def wait(self, key: Key, also_at: float, stopped: Awaitable[Any] | None = None) -> bool:
        """Until woken, a requeue, `also_at` or a resync is due, or `stopped` finishes.

        True when woken by an event."""
        event = self.events.setdefault(key, asyncio.Event())
        waiters = [asyncio.ensure_future(event.wait())]
        if stopped is not None:
            waiters.append(asyncio.ensure_future(stopped))
        try:
            await asyncio.wait(
                waiters, timeout=self.timeout(key, also_at), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waiters:
                waiter.cancel()
        woken = event.is_set()
        event.clear()
        return woken

    def worth_reconciling(self, key: Key, woken: bool, scraped: bool) -> bool:
        """Whether a wake-up has anything for a reconcile: an event, a scrape with pods in it,
        a requeue or a resync that is due. A tick of a deployment without ready pods is not
        (1,000 of them would otherwise re-render every scrape interval)."""
        now = time.monotonic()
        if woken or scraped or self.due.get(key, now + 1) <= now:
            return True
        return now - self.last_reconciled.get(key, float("-inf")) >= self.resync_seconds
