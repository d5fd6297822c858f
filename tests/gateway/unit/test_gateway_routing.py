"""The gateway's request path against stub replicas: routing, affinity, load, errors."""

from __future__ import annotations

import asyncio

from gateway_testing import replica_of, target

from llm_gateway.directory import StaticDirectory


def chat(model: str, system: str, user: str, **extra: object) -> dict[str, object]:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    return {"model": model, "messages": messages, **extra}


async def test_routes_by_model(make_stub, make_gateway) -> None:
    a, b = await make_stub("a"), await make_stub("b")
    directory = StaticDirectory([target("alpha", replica_of(a)), target("beta", replica_of(b))])
    gateway = await make_gateway(directory)
    status, body = await gateway.post("/v1/chat/completions", chat("alpha", "s", "hi"))
    assert status == 200 and body["choices"][0]["message"]["content"] == "from a"
    status, body = await gateway.post("/v1/completions", {"model": "beta", "prompt": "hi"})
    assert status == 200 and body["choices"][0]["text"] == "from b"
    assert [r["model"] for r in a.received] == ["alpha"]
    assert [r["model"] for r in b.received] == ["beta"]


async def test_lists_models_of_the_directory(make_stub, make_gateway) -> None:
    a = await make_stub("a")
    directory = StaticDirectory([target("beta", replica_of(a)), target("alpha")])
    gateway = await make_gateway(directory)
    async with gateway.session.get(gateway.url + "/v1/models") as response:
        listing = await response.json()
    assert listing["object"] == "list"
    assert [(m["id"], m["object"]) for m in listing["data"]] == [
        ("alpha", "model"),
        ("beta", "model"),
    ]
    async with gateway.session.get(gateway.url + "/v1/models/beta") as response:
        assert (await response.json())["owned_by"] == "ns/beta-deploy"


async def test_unknown_model_is_404_model_not_found(make_gateway) -> None:
    gateway = await make_gateway(StaticDirectory())
    status, body = await gateway.post("/v1/chat/completions", chat("nope", "s", "u"))
    assert status == 404
    assert body["error"]["code"] == "model_not_found" and body["error"]["param"] == "model"
    assert 'llm_gateway_responses_total{code="404",model=""} 1.0' in await gateway.metrics()


async def test_bad_bodies_are_openai_400s(make_gateway) -> None:
    gateway = await make_gateway(StaticDirectory())
    cases = [b"{not json", b"[1, 2]", b'{"prompt": "no model"}', b'{"model": 7}']
    for raw in cases:
        async with gateway.session.post(
            gateway.url + "/v1/completions", data=raw, headers={"Content-Type": "application/json"}
        ) as response:
            body = await response.json()
            assert response.status == 400, raw
            assert body["error"]["type"] == "invalid_request_error", raw
            assert set(body["error"]) == {"message", "type", "param", "code"}


async def test_oversized_body_is_413(make_stub, make_gateway) -> None:
    a = await make_stub("a")
    gateway = await make_gateway(StaticDirectory([target("m", replica_of(a))]), max_body_bytes=1000)
    status, body = await gateway.post("/v1/completions", {"model": "m", "prompt": "x" * 2000})
    assert status == 413 and "1000 bytes" in body["error"]["message"]
    assert a.received == []


async def test_unknown_path_answers_in_openai_format(make_gateway) -> None:
    gateway = await make_gateway(StaticDirectory())
    async with gateway.session.get(gateway.url + "/v1/embeddings") as response:
        assert response.status == 404
        assert (await response.json())["error"]["message"] == "Not Found"


async def test_same_system_prompt_lands_on_the_same_replica(make_stub, make_gateway) -> None:
    stubs = [await make_stub(f"r{i}") for i in range(4)]
    gateway = await make_gateway(StaticDirectory([target("m", *map(replica_of, stubs))]))
    # Longer than prefix_chars (256): the system prompt alone decides.
    systems = [f"You are assistant number {i}. " * 12 for i in range(8)]
    for user in range(5):
        for system in systems:
            status, _ = await gateway.post("/v1/chat/completions", chat("m", system, f"q{user}"))
            assert status == 200
    # Each system prompt went to exactly one replica, every time.
    served_by: dict[str, set[str]] = {}
    for stub in stubs:
        for request in stub.received:
            served_by.setdefault(request["messages"][0]["content"], set()).add(stub.name)
    assert len(served_by) == 8 and all(len(names) == 1 for names in served_by.values())
    assert len({name for names in served_by.values() for name in names}) > 1  # spread, too
    metrics = await gateway.metrics()
    assert 'picked_by="affinity"' in metrics and 'picked_by="load"' not in metrics


async def test_saturated_affinity_replica_overflows_to_others(make_stub, make_gateway) -> None:
    stubs = [await make_stub(f"r{i}", mode="hold") for i in range(3)]
    gateway = await make_gateway(StaticDirectory([target("m", *map(replica_of, stubs))]))
    same = chat("m", "one shared system prompt", "same question")
    requests = [asyncio.create_task(gateway.post("/v1/chat/completions", same)) for _ in range(9)]
    while sum(s.holding for s in stubs) < 9:
        await asyncio.sleep(0.01)
    held = sorted(s.holding for s in stubs)
    # c = 1.25, 9 requests, 3 replicas: none holds more than ceil(1.25 × 9 / 3) = 4.
    assert max(held) <= 4 and min(held) >= 1, held
    for stub in stubs:
        stub.release.set()
    assert all(status == 200 for status, _ in await asyncio.gather(*requests))
    metrics = await gateway.metrics()
    assert 'picked_by="affinity"' in metrics and 'picked_by="load"' in metrics


async def test_scraped_queue_counts_as_load(make_stub, make_gateway) -> None:
    busy, idle = await make_stub("busy", queue=50), await make_stub("idle")
    gateway = await make_gateway(StaticDirectory([target("m", replica_of(busy), replica_of(idle))]))
    assert gateway.core.scraper is not None
    await gateway.core.scraper.scrape_once()  # what the loop does every scrape interval
    for i in range(10):
        status, body = await gateway.post("/v1/completions", {"model": "m", "prompt": f"p{i}"})
        assert status == 200 and body["choices"][0]["text"] == "from idle"


async def test_skips_not_ready_and_terminating_replicas(make_stub, make_gateway) -> None:
    up, starting, draining = await make_stub("up"), await make_stub("s"), await make_stub("d")
    replicas = (
        replica_of(up),
        replica_of(starting, ready=False),
        replica_of(draining, terminating=True),
    )
    gateway = await make_gateway(StaticDirectory([target("m", *replicas)]))
    for i in range(12):
        assert (await gateway.post("/v1/completions", {"model": "m", "prompt": str(i)}))[0] == 200
    assert len(up.received) == 12 and starting.received == draining.received == []
    metrics = await gateway.metrics()
    assert 'picked_by="only"' in metrics
    for state in ("ready", "not_ready", "terminating"):
        assert f'llm_gateway_replicas{{model="m",state="{state}"}} 1.0' in metrics


class SyncingDirectory(StaticDirectory):
    def __init__(self) -> None:
        super().__init__()
        self.is_synced = False

    def synced(self) -> bool:
        return self.is_synced


async def test_probes(make_gateway) -> None:
    directory = SyncingDirectory()
    gateway = await make_gateway(directory)
    async with gateway.session.get(gateway.url + "/healthz") as response:
        assert response.status == 200
    async with gateway.session.get(gateway.url + "/readyz") as response:
        assert response.status == 503  # the directory's first view is not in yet
    directory.is_synced = True
    async with gateway.session.get(gateway.url + "/readyz") as response:
        assert response.status == 200


async def test_forwards_authorization_and_request_id(make_stub, make_gateway) -> None:
    a = await make_stub("a")
    gateway = await make_gateway(StaticDirectory([target("m", replica_of(a))]))
    headers = {"Authorization": "Bearer sk-tenant", "X-Request-Id": "req-1", "Cookie": "no"}
    request = {"model": "m", "prompt": "p"}
    status, _ = await gateway.post("/v1/completions", request, headers=headers)
    assert status == 200
    forwarded = a.headers[0]
    assert forwarded["Authorization"] == "Bearer sk-tenant" and forwarded["X-Request-Id"] == "req-1"
    assert "Cookie" not in forwarded


async def test_upstream_429_and_503_are_relayed_as_is(make_stub, make_gateway) -> None:
    for code in (429, 503):
        a = await make_stub(f"a{code}", mode="status", status=code)
        gateway = await make_gateway(StaticDirectory([target("m", replica_of(a))]))
        async with gateway.session.post(
            gateway.url + "/v1/completions", json={"model": "m", "prompt": "p"}
        ) as response:
            assert response.status == code and response.headers["Retry-After"] == "7"
            assert (await response.json())["error"]["message"] == "busy"
        relayed = f'llm_gateway_responses_total{{code="{code}",model="m"}} 1.0'
        assert relayed in await gateway.metrics()
