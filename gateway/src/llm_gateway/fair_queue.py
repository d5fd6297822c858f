"""Fair queueing of a saturated model: tenants share it by weight, priority decides who is shed.

A model is saturated when each of its serving replicas already has its capacity in flight (its
LLMDeployment's batching.maxConcurrentSequences: beyond that the server only queues, first come
first served, so one busy tenant would make everyone wait behind it). Then requests wait here,
one queue per model, and leave in start-time fair queueing order at one unit per request: while
both wait, a tenant of weight 3 is dispatched three times as often as one of weight 1, and a
tenant that was idle banks no credit. Every tenant with a waiting request gets its turn: nobody
starves. The queue is bounded: a request arriving at a full queue sheds the newest waiting
request of a lower priority class (it gets 429), or, when there is none, is refused itself.
A request waits at most the queue timeout. Anonymous callers share one tenant of weight 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from llm_gateway.fair_share import Entry, FairOrder, Share
from llm_gateway.metrics import GatewayMetrics, QueueRejection

RECHECK_SECONDS = 0.5  # the head also re-checks for room this often (scrapes, new replicas)


class QueueRefused(Exception):
    """The request leaves the queue unserved: 429 with Retry-After."""

    def __init__(self, reason: QueueRejection) -> None:
        super().__init__(reason)
        self.reason: QueueRejection = reason


class FairQueue:
    """The gateway's per-model fair queues. `has_room()` says whether a replica can take one
    more request now; the proxy calls `slot_freed(model)` whenever a request to it ends."""

    def __init__(
        self,
        metrics: GatewayMetrics,
        max_queued_per_model: int,
        timeout_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._metrics = metrics
        self._bound = max_queued_per_model
        self._timeout = timeout_seconds
        self._clock = clock
        self._orders: dict[str, FairOrder] = {}
        self._turns: dict[Entry, asyncio.Event] = {}  # a waiting request's wake-up

    def queued(self, model: str) -> int:
        order = self._orders.get(model)
        return 0 if order is None else len(order)

    async def wait_turn(self, model: str, share: Share, has_room: Callable[[], bool]) -> float:
        """Returns (the seconds it waited) when it is this request's turn and a replica has
        room; raises QueueRefused."""
        if not self.queued(model) and has_room():
            return 0.0  # not saturated: no queue, no wait
        order = self._orders.setdefault(model, FairOrder(self._bound))
        entry, shed = order.push(share)
        if shed is not None:
            self._metrics.queue_rejected(model, shed.share.tenant, "shed")
            self._turns[shed].set()
        if entry is None:
            self._metrics.queue_rejected(model, share.tenant, "queue_full")
            raise QueueRefused("queue_full")
        self._metrics.queued_changed(model, +1)
        turn = self._turns[entry] = asyncio.Event()
        started = self._clock()
        try:
            while True:
                if entry.shed:
                    raise QueueRefused("shed")  # counted by whoever shed it
                if order.head() is entry and has_room():
                    order.pop()
                    waited = self._clock() - started
                    self._metrics.queue_waited(model, waited)
                    return waited
                remaining = started + self._timeout - self._clock()
                if remaining <= 0:
                    self._metrics.queue_rejected(model, share.tenant, "queue_timeout")
                    raise QueueRefused("queue_timeout")
                turn.clear()
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that arrives as the event is set (the client left: it must not be served).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(remaining, RECHECK_SECONDS)):
                        await turn.wait()
        finally:  # also when the client leaves (the handler is cancelled)
            del self._turns[entry]
            order.remove(entry)
            self._metrics.queued_changed(model, -1)
            if not order and self._orders.get(model) is order:
                del self._orders[model]  # nobody waits: nobody is owed a turn
            self.slot_freed(model)  # a new head (or the next, if there is room) checks

    def slot_freed(self, model: str) -> None:
        """Wake the head of the model's queue to check for room."""
        order = self._orders.get(model)
        head = order.head() if order is not None else None
        if head is not None:
            self._turns[head].set()
