"""Requests for a model with no serving replica are held: answered once one is ready, 429 over
the bound, 503 after the timeout; demand is signalled while they wait."""

from __future__ import annotations

import asyncio
import itertools

from gateway_testing import replica_of, target

from llm_gateway.directory import StaticDirectory

REQUEST = {"model": "m", "prompt": "hello"}


async def wait_until_held(gateway, count: int) -> None:
    while gateway.core.holder.held("m") < count:
        await asyncio.sleep(0.01)


async def test_held_request_is_answered_once_a_replica_is_ready(make_stub, make_gateway) -> None:
    stub = await make_stub("late")
    directory = StaticDirectory([target("m", replica_of(stub, ready=False))])
    gateway = await make_gateway(directory)
    requests = [asyncio.create_task(gateway.post("/v1/completions", REQUEST)) for _ in range(3)]
    await wait_until_held(gateway, 3)
    assert stub.received == [] and directory.demand_signals == ["m"]  # one signal per interval
    assert 'llm_gateway_held_requests{model="m"} 3.0' in await gateway.metrics()
    directory.put(target("m", replica_of(stub)))
    for status, body in await asyncio.gather(*requests):
        assert status == 200 and body["choices"][0]["text"] == "from late"
    metrics = await gateway.metrics()
    assert 'llm_gateway_holds_total{model="m",outcome="served"} 3.0' in metrics
    assert 'llm_gateway_held_requests{model="m"} 0.0' in metrics
    assert 'llm_gateway_hold_seconds_count{model="m"} 3.0' in metrics


async def test_a_model_with_no_replicas_at_all_is_held_too(make_stub, make_gateway) -> None:
    directory = StaticDirectory([target("m")])  # scaled to zero: no pod exists
    gateway = await make_gateway(directory)
    request = asyncio.create_task(gateway.post("/v1/completions", REQUEST))
    await wait_until_held(gateway, 1)
    stub = await make_stub("cold")
    directory.put(target("m", replica_of(stub)))
    status, _ = await request
    assert status == 200 and len(stub.received) == 1


async def test_over_the_bound_is_429_with_retry_after(make_gateway) -> None:
    gateway = await make_gateway(StaticDirectory([target("m")]), max_held_per_model=2)
    held = [asyncio.create_task(gateway.post("/v1/completions", REQUEST)) for _ in range(2)]
    await wait_until_held(gateway, 2)
    async with gateway.session.post(gateway.url + "/v1/completions", json=REQUEST) as response:
        body = await response.json()
        assert response.status == 429 and int(response.headers["Retry-After"]) > 0
    assert body["error"]["code"] == "too_many_held_requests"
    assert 'llm_gateway_holds_total{model="m",outcome="rejected"} 1.0' in await gateway.metrics()
    for task in held:
        task.cancel()


async def test_hold_timeout_is_503_with_retry_after(make_gateway) -> None:
    gateway = await make_gateway(StaticDirectory([target("m")]), hold_timeout_seconds=0.2)
    async with gateway.session.post(gateway.url + "/v1/completions", json=REQUEST) as response:
        body = await response.json()
        assert response.status == 503 and int(response.headers["Retry-After"]) > 0
    assert body["error"]["code"] == "no_ready_replica"
    metrics = await gateway.metrics()
    assert 'llm_gateway_holds_total{model="m",outcome="timeout"} 1.0' in metrics
    assert 'llm_gateway_responses_total{code="503",model="m"} 1.0' in metrics


async def test_a_client_that_leaves_frees_its_hold_slot(make_gateway) -> None:
    gateway = await make_gateway(StaticDirectory([target("m")]), max_held_per_model=1)
    leaving = asyncio.create_task(gateway.post("/v1/completions", REQUEST))
    await wait_until_held(gateway, 1)
    leaving.cancel()
    for _ in range(500):  # the server notices the closed connection and cancels the handler
        if gateway.core.holder.held("m") == 0:
            break
        await asyncio.sleep(0.01)
    assert gateway.core.holder.held("m") == 0
    assert 'llm_gateway_responses_total{code="499",model="m"} 1.0' in await gateway.metrics()


class ClockedDirectory(StaticDirectory):
    """Waiting for a change just moves a fake clock: the hold loop runs in no real time."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.now = 0.0
        self.signalled_at: list[float] = []

    async def wait_changed(self, timeout: float) -> None:
        self.now += timeout
        await asyncio.sleep(0)

    async def signal_demand(self, target) -> None:
        self.signalled_at.append(self.now)


async def test_demand_is_signalled_every_refresh_interval_while_held() -> None:
    from llm_gateway.holding import Holder, HoldTimedOut
    from llm_gateway.metrics import GatewayMetrics
    from llm_operator.api.demand import DEMAND_REFRESH_SECONDS

    directory = ClockedDirectory([target("m")])
    timeout = 2.5 * DEMAND_REFRESH_SECONDS
    holder = Holder(directory, GatewayMetrics(), 10, timeout, clock=lambda: directory.now)
    waiting = [asyncio.create_task(holder.wait_for_replica(target("m"))) for _ in range(3)]
    outcomes = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(outcome, HoldTimedOut) for outcome in outcomes)
    # Three requests held together, yet one signal per interval for the model.
    times = directory.signalled_at
    intervals = [b - a for a, b in itertools.pairwise(times)]
    assert len(directory.signalled_at) >= 2
    assert all(interval >= DEMAND_REFRESH_SECONDS for interval in intervals)
    assert holder.held("m") == 0
