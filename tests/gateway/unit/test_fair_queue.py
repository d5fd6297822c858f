"""A saturated model's fair queue: waiting for room in fair order, bounds, timeouts, clients
that leave; and through the gateway: a model with a capacity per replica queues beyond it,
answers 429 with Retry-After when the queue is full or too slow, and a route falls back."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from gateway_testing import replica_of
from stub_upstream import StubReplica

from llm_gateway.directory import ModelTarget, StaticDirectory
from llm_gateway.fair_queue import FairQueue, QueueRefused
from llm_gateway.fair_share import Share
from llm_gateway.metrics import GatewayMetrics
from llm_gateway.routes import Route, RouteTable
from llm_operator.api.route import LLMRouteSpec

GOLD = Share(("ns", "gold"), weight=3)
BRONZE = Share(("ns", "bronze"), weight=1)


class Slots:
    """A model with `free` request slots: what has_room() reads in these tests."""

    def __init__(self, free: int) -> None:
        self.free = free

    def has_room(self) -> bool:
        return self.free > 0


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_waiters_are_dispatched_one_slot_at_a_time_in_weighted_order() -> None:
    queue = FairQueue(GatewayMetrics(), max_queued_per_model=100, timeout_seconds=30)
    slots = Slots(0)
    served: list[str] = []

    async def request(share: Share) -> None:
        await queue.wait_turn("m", share, slots.has_room)
        slots.free -= 1  # the proxy's in-flight count goes up at once
        served.append(share.tenant[1])

    tasks = [asyncio.create_task(request(BRONZE)) for _ in range(8)]
    await settle()
    tasks += [asyncio.create_task(request(GOLD)) for _ in range(8)]
    await settle()
    assert queue.queued("m") == 16 and served == []
    for _ in range(8):  # one request ends at a time, as a saturated replica frees a slot
        slots.free += 1
        queue.slot_freed("m")
        await settle()
    assert served.count("gold") == 6 and served.count("bronze") == 2
    slots.free += 100
    queue.slot_freed("m")
    await asyncio.gather(*tasks)
    assert len(served) == 16 and queue.queued("m") == 0


async def test_no_queue_means_no_wait() -> None:
    queue = FairQueue(GatewayMetrics(), max_queued_per_model=1, timeout_seconds=1)
    assert await queue.wait_turn("m", GOLD, lambda: True) == 0.0
    assert queue.queued("m") == 0


async def test_full_queue_refuses_or_sheds_a_lower_priority_and_counts_it() -> None:
    metrics = GatewayMetrics()
    queue = FairQueue(metrics, max_queued_per_model=1, timeout_seconds=30)
    low = Share(("ns", "batch"), priority="low")
    waiting = asyncio.create_task(queue.wait_turn("m", low, lambda: False))
    await settle()
    with pytest.raises(QueueRefused) as refused:  # an equal priority: refused
        await queue.wait_turn("m", low, lambda: False)
    assert refused.value.reason == "queue_full"
    high = asyncio.create_task(queue.wait_turn("m", Share(("ns", "web"), priority="high"),
                                               lambda: False))  # fmt: skip
    with pytest.raises(QueueRefused) as shed:
        await waiting
    assert shed.value.reason == "shed"
    rejected = metrics.queue_rejections
    assert rejected.labels("m", "ns", "batch", "queue_full")._value.get() == 1
    assert rejected.labels("m", "ns", "batch", "shed")._value.get() == 1
    high.cancel()
    with pytest.raises(asyncio.CancelledError):
        await high
    assert queue.queued("m") == 0 and metrics.queued.labels("m")._value.get() == 0


async def test_a_request_waits_at_most_the_timeout() -> None:
    queue = FairQueue(GatewayMetrics(), max_queued_per_model=10, timeout_seconds=0.2)
    with pytest.raises(QueueRefused) as refused:
        await queue.wait_turn("m", GOLD, lambda: False)
    assert refused.value.reason == "queue_timeout" and queue.queued("m") == 0


async def test_a_client_that_leaves_hands_the_turn_to_the_next() -> None:
    queue = FairQueue(GatewayMetrics(), max_queued_per_model=10, timeout_seconds=30)
    slots = Slots(0)
    head = asyncio.create_task(queue.wait_turn("m", GOLD, slots.has_room))
    await settle()
    behind = asyncio.create_task(queue.wait_turn("m", BRONZE, slots.has_room))
    await settle()
    slots.free = 1
    head.cancel()  # left just as a slot opened: the next one takes it, at once
    await asyncio.wait_for(behind, 0.3)
    assert queue.queued("m") == 0


# --- through the gateway -------------------------------------------------------------------


def capped(model: str, *stubs: StubReplica, capacity: int = 1) -> ModelTarget:
    replicas = tuple(replica_of(s) for s in stubs)
    return ModelTarget(model, "ns", model, replicas, capacity_per_replica=capacity)


async def wait_for(check: Any, what: str) -> None:
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_saturated_model_queues_beyond_its_capacity_and_serves_all(
    make_stub, make_gateway
) -> None:
    stubs = [await make_stub(f"r{i}", mode="hold") for i in range(2)]
    gateway = await make_gateway(StaticDirectory([capped("m", *stubs)]), static_models="x")
    body = {"model": "m", "prompt": "Hello"}
    calls = [asyncio.create_task(gateway.post("/v1/completions", body)) for _ in range(5)]
    await wait_for(lambda: gateway.core.queue.queued("m") == 3, "3 queued")
    await wait_for(lambda: [s.holding for s in stubs] == [1, 1], "one on each replica")
    await asyncio.sleep(0.1)
    assert [s.holding for s in stubs] == [1, 1]  # their capacity, not 5 requests
    assert 'llm_gateway_queued_requests{model="m"} 3.0' in await gateway.metrics()
    for stub in stubs:
        stub.release.set()
    results = await asyncio.gather(*calls)
    assert [status for status, _ in results] == [200] * 5
    assert 'llm_gateway_queue_seconds_count{model="m"} 3.0' in await gateway.metrics()


async def test_a_full_or_slow_queue_answers_429_with_retry_after(make_stub, make_gateway) -> None:
    stub = await make_stub("r0", mode="hold")
    gateway = await make_gateway(
        StaticDirectory([capped("m", stub)]), static_models="x", max_queued_per_model=1,
        queue_timeout_seconds=0.5,
    )  # fmt: skip
    body = {"model": "m", "prompt": "Hello"}
    running = asyncio.create_task(gateway.post("/v1/completions", body))
    await wait_for(lambda: stub.holding == 1, "the first request running")
    queued = asyncio.create_task(gateway.post("/v1/completions", body))
    await wait_for(lambda: gateway.core.queue.queued("m") == 1, "one queued")
    async with gateway.session.post(gateway.url + "/v1/completions", json=body) as response:
        assert response.status == 429 and response.headers["Retry-After"] == "1"
        assert (await response.json())["error"]["code"] == "queue_full"
    status, answer = await queued  # nobody freed a slot within the queue timeout
    assert status == 429 and answer["error"]["code"] == "queue_timeout"
    stub.release.set()
    assert (await running)[0] == 200


async def test_a_route_falls_back_when_its_first_target_is_saturated(
    make_stub, make_gateway
) -> None:
    busy = await make_stub("busy", mode="hold")
    backup = await make_stub("backup")
    spec = LLMRouteSpec.model_validate(
        {"model": "assistant", "targets": [{"deployment": "busy"}], "fallback": ["backup"]}
    )
    directory = StaticDirectory([capped("busy", busy), capped("backup", backup)])
    gateway = await make_gateway(directory, static_models="x")
    gateway.core.routes = RouteTable([Route.of("ns", "assistant", spec)])
    first = asyncio.create_task(gateway.post("/v1/completions", {"model": "busy", "prompt": "x"}))
    await wait_for(lambda: busy.holding == 1, "busy saturated")
    status, answer = await gateway.post("/v1/completions", {"model": "assistant", "prompt": "y"})
    assert status == 200 and answer["choices"][0]["text"] == "from backup"
    assert gateway.core.queue.queued("busy") == 0  # it did not wait there
    busy.release.set()
    assert (await first)[0] == 200
