"""Replicas that die: before the first byte (retried once elsewhere) and mid-stream (cut)."""

from __future__ import annotations

import socket

import aiohttp
import openai
import pytest
from gateway_testing import replica_of, target
from stub_upstream import STREAM_PIECES

from llm_gateway.directory import Replica, StaticDirectory


def dead_replica(name: str) -> Replica:
    """A replica whose port refuses connections (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return Replica(pod=name, url=f"http://127.0.0.1:{port}", ready=True, terminating=False)


async def test_streaming_relay_through_the_openai_client(make_stub, make_gateway) -> None:
    a = await make_stub("a")
    gateway = await make_gateway(StaticDirectory([target("m", replica_of(a))]))
    client = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key="sk-x", max_retries=0)
    stream = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "count"}], stream=True
    )
    pieces = [event.choices[0].delta.content async for event in stream]
    assert pieces == list(STREAM_PIECES)
    reply = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.choices[0].message.content == "from a"
    await client.close()


async def test_refused_connection_is_retried_on_another_replica(make_stub, make_gateway) -> None:
    alive = await make_stub("alive")
    dead = dead_replica("dead")
    gateway = await make_gateway(StaticDirectory([target("m", dead, replica_of(alive))]))
    for i in range(20):  # some keys hash to the dead replica first
        status, body = await gateway.post("/v1/completions", {"model": "m", "prompt": f"p{i}"})
        assert status == 200 and body["choices"][0]["text"] == "from alive"
    metrics = await gateway.metrics()
    # The first refusal marks it failing: later requests skip it without trying.
    assert 'llm_gateway_retries_total{model="m",pod="dead"} 1.0' in metrics
    assert 'llm_gateway_requests_total{model="m",picked_by="affinity",pod="dead"} 1.0' in metrics


async def test_all_replicas_refusing_is_502_after_one_retry(make_gateway) -> None:
    first, second = dead_replica("x"), dead_replica("y")
    gateway = await make_gateway(StaticDirectory([target("m", first, second)]))
    status, body = await gateway.post("/v1/completions", {"model": "m", "prompt": "p"})
    assert status == 502 and body["error"]["code"] == "upstream_unavailable"
    metrics = await gateway.metrics()
    retried = [x for x in metrics.splitlines() if x.startswith("llm_gateway_retries_total")]
    assert len(retried) == 1 and retried[0].endswith(" 1.0")  # once, not twice


async def test_a_single_refusing_replica_is_502_without_a_retry(make_gateway) -> None:
    gateway = await make_gateway(StaticDirectory([target("m", dead_replica("only"))]))
    status, body = await gateway.post("/v1/completions", {"model": "m", "prompt": "p"})
    assert status == 502 and body["error"]["type"] == "upstream_error"
    assert "llm_gateway_retries_total{" not in await gateway.metrics()


async def test_failure_mid_stream_truncates_without_retry(make_stub, make_gateway) -> None:
    stubs = [await make_stub("c1", mode="cut"), await make_stub("c2", mode="cut")]
    gateway = await make_gateway(StaticDirectory([target("m", *map(replica_of, stubs))]))
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True}
    received = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        async with gateway.session.post(gateway.url + "/v1/chat/completions", json=body) as r:
            assert r.status == 200
            async for data in r.content.iter_any():
                received += data
    assert b"one " in received and b"[DONE]" not in received  # truncated, not completed
    assert sum(len(stub.received) for stub in stubs) == 1  # the other replica never saw it
    assert "llm_gateway_retries_total{" not in await gateway.metrics()


async def test_a_draining_replica_s_503_is_retried_elsewhere(make_stub, make_gateway) -> None:
    draining = await make_stub("draining", mode="status", status=503, code="draining")
    alive = await make_stub("alive")
    gateway = await make_gateway(
        StaticDirectory([target("m", replica_of(draining), replica_of(alive))])
    )
    for i in range(12):
        status, body = await gateway.post("/v1/completions", {"model": "m", "prompt": f"p{i}"})
        assert status == 200 and body["choices"][0]["text"] == "from alive"
    assert len(draining.received) == 1  # then skipped as failing
    assert 'llm_gateway_retries_total{model="m",pod="draining"} 1.0' in await gateway.metrics()


async def test_an_overloaded_503_or_a_lone_draining_replica_is_relayed(
    make_stub, make_gateway
) -> None:
    busy = await make_stub("busy", mode="status", status=503, code="overloaded")
    other = await make_stub("other", mode="status", status=503, code="overloaded")
    gateway = await make_gateway(
        StaticDirectory([target("m", replica_of(busy), replica_of(other))])
    )
    async with gateway.session.post(gateway.url + "/v1/completions", json={"model": "m"}) as r:
        assert r.status == 503 and r.headers["Retry-After"] == "7"
        assert (await r.json())["error"]["code"] == "overloaded"
    assert len(busy.received) + len(other.received) == 1  # the replica's answer, not retried
    lone = await make_stub("lone", mode="status", status=503, code="draining")
    gateway = await make_gateway(StaticDirectory([target("m", replica_of(lone))]))
    async with gateway.session.post(gateway.url + "/v1/completions", json={"model": "m"}) as r:
        assert r.status == 503 and (await r.json())["error"]["code"] == "draining"
