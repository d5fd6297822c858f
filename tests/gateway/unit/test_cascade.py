"""Routes through the gateway with stub upstreams: cascades gated on chosen answers, splits
and fallbacks, the route metrics and dollars."""

from __future__ import annotations

from typing import Any

import openai
import pytest
import route_stubs
from route_stubs import USAGE, target_of

from llm_gateway.directory import ModelTarget
from llm_gateway.tenants import KeySecret, Tenant, TenantTable, key_digest

make_stubs = route_stubs.make_stubs
make_routed = route_stubs.make_routed

TOKENS = USAGE["prompt_tokens"] + USAGE["completion_tokens"]
CHEAP, LARGE = 0.5, 4.0  # $/1M tokens
GATE = {"minMeanTokenLogprob": -1.0, "rejectPattern": "(?i)i don't know"}
CASCADE = {"model": "assistant", "cascade": {"steps": ["cheap", "large"], "gate": GATE}}
CHAT = {"model": "assistant", "messages": [{"role": "user", "content": "Capital of France?"}]}
ROUTE = {"namespace": "ns", "route": "assistant"}


async def cascade_of(make_stubs: Any, make_routed: Any, **cheap: Any) -> tuple[Any, ...]:
    small = await make_stubs("cheap", **{"text": "Paris.", **cheap})
    large = await make_stubs("large", text="Paris, France.")
    gateway = await make_routed([target_of(small, CHEAP), target_of(large, LARGE)], CASCADE)
    return gateway, small, large


async def test_a_passing_cheap_answer_is_served_and_priced(make_stubs, make_routed) -> None:
    gateway, small, large = await cascade_of(make_stubs, make_routed)
    status, answer = await gateway.post("/v1/chat/completions", CHAT)
    assert status == 200
    assert answer["choices"][0]["message"]["content"] == "Paris."
    assert answer["choices"][0]["logprobs"] is None  # asked upstream for the gate, taken out
    [sent] = small.received
    assert sent["model"] == "cheap-model" and sent["logprobs"] is True and "stream" not in sent
    assert large.received == []
    assert gateway.sample("llm_gateway_route_requests_total", **ROUTE, target="cheap",
                          outcome="served") == 1  # fmt: skip
    assert gateway.sample("llm_gateway_route_dollars_total", **ROUTE) == TOKENS * CHEAP / 1e6
    direct = gateway.sample("llm_gateway_route_direct_dollars_total", **ROUTE)
    assert direct == TOKENS * LARGE / 1e6


@pytest.mark.parametrize(
    ("cheap", "gate"),
    [
        ({"text": "  "}, "empty"),
        ({"finish": "length"}, "length"),
        ({"text": "I don't know."}, "pattern"),
        ({"logprob": -2.5}, "logprob"),
    ],
)
async def test_each_gate_escalates(make_stubs, make_routed, cheap: Any, gate: str) -> None:
    gateway, small, large = await cascade_of(make_stubs, make_routed, **cheap)
    status, answer = await gateway.post("/v1/chat/completions", CHAT)
    assert status == 200
    assert answer["choices"][0]["message"]["content"] == "Paris, France."
    assert len(small.received) == len(large.received) == 1
    assert gateway.samples("llm_gateway_cascade_escalations_total") == [
        f'llm_gateway_cascade_escalations_total{{gate="{gate}",namespace="ns",'
        f'route="assistant",step="cheap"}} 1.0'
    ]
    for step, outcome in (("cheap", "escalated"), ("large", "served")):
        assert gateway.sample("llm_gateway_route_requests_total", **ROUTE, target=step,
                              outcome=outcome) == 1  # fmt: skip
    # Both attempts are paid; a direct call would have paid the large one only.
    spent = gateway.sample("llm_gateway_route_dollars_total", **ROUTE)
    assert spent == pytest.approx(TOKENS * (CHEAP + LARGE) / 1e6)
    direct = gateway.sample("llm_gateway_route_direct_dollars_total", **ROUTE)
    assert direct == pytest.approx(TOKENS * LARGE / 1e6)


async def test_completions_ask_for_logprobs_and_keep_the_clients(make_stubs, make_routed) -> None:
    gateway, small, _ = await cascade_of(make_stubs, make_routed)
    body = {"model": "assistant", "prompt": "2+2=", "max_tokens": 4}
    status, answer = await gateway.post("/v1/completions", body)
    assert status == 200 and answer["choices"][0]["logprobs"] is None
    assert small.received[-1]["logprobs"] == 1
    status, answer = await gateway.post("/v1/completions", {**body, "logprobs": 2})
    assert small.received[-1]["logprobs"] == 2  # the client's own request stands
    assert answer["choices"][0]["logprobs"]["token_logprobs"] == [-0.1] * 3


@pytest.mark.parametrize("escalate", [False, True])
async def test_a_streamed_cascade_is_a_valid_stream(make_stubs, make_routed, escalate) -> None:
    gateway, small, large = await cascade_of(
        make_stubs, make_routed, logprob=-3.0 if escalate else -0.1
    )
    client = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key="sk-x", max_retries=0)
    stream = await client.chat.completions.create(
        model="assistant", messages=CHAT["messages"], stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ("Paris, France." if escalate else "Paris.")
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == TOKENS
    assert all(c.choices[0].logprobs is None for c in chunks if c.choices)
    assert "stream" not in small.received[0]  # every step is called non-streamed
    assert len(large.received) == int(escalate)
    await client.close()


async def test_a_failing_step_moves_on_and_a_failing_last_step_is_the_answer(
    make_stubs, make_routed
) -> None:
    gateway, _, large = await cascade_of(make_stubs, make_routed, status=500)
    status, answer = await gateway.post("/v1/chat/completions", CHAT)
    assert status == 200 and answer["choices"][0]["message"]["content"] == "Paris, France."
    assert gateway.sample("llm_gateway_route_requests_total", **ROUTE, target="cheap",
                          outcome="fallback") == 1  # fmt: skip
    large.status = 503
    status, _ = await gateway.post("/v1/chat/completions", CHAT)
    assert status == 503
    assert gateway.sample("llm_gateway_route_requests_total", **ROUTE, target="large",
                          outcome="failed") == 1  # fmt: skip


def split(*targets: tuple[str, int], fallback: list[str]) -> dict[str, Any]:
    weighted = [{"deployment": d, "weight": w} for d, w in targets]
    return {"model": "assistant", "targets": weighted, "fallback": fallback}


async def test_split_falls_back_on_429_and_on_a_dead_target(make_stubs, make_routed) -> None:
    busy = await make_stubs("busy", status=429)
    backup = await make_stubs("backup", text="from backup")
    gateway = await make_routed(
        [target_of(busy, 1.0), target_of(backup, 2.0)], split(("busy", 1), fallback=["backup"])
    )
    status, answer = await gateway.post("/v1/chat/completions", CHAT)
    assert status == 200 and answer["choices"][0]["message"]["content"] == "from backup"
    assert busy.received[0]["model"] == "busy-model"
    assert backup.received[0]["model"] == "backup-model"  # the target's own served name
    assert gateway.sample("llm_gateway_route_requests_total", **ROUTE, target="busy",
                          outcome="fallback") == 1  # fmt: skip
    # Dollars at the answering target's price; direct at the picked (busy) one's.
    assert gateway.sample("llm_gateway_route_dollars_total", **ROUTE) == TOKENS * 2.0 / 1e6
    assert gateway.sample("llm_gateway_route_direct_dollars_total", **ROUTE) == TOKENS / 1e6
    assert busy.server is not None
    await busy.server.close()  # dead: the connection is refused
    status, answer = await gateway.post("/v1/chat/completions", CHAT)
    assert status == 200 and answer["choices"][0]["message"]["content"] == "from backup"
    # Streams fall back too (the 429 came before the first byte) and relay as they come.
    client = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key="sk-x", max_retries=0)
    stream = await client.chat.completions.create(
        model="assistant", messages=CHAT["messages"], stream=True
    )
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "from backup"
    assert all(c.usage is None for c in chunks)  # asked upstream for tenancy, taken out
    await client.close()


async def test_a_budget_limited_or_unready_target_is_skipped(make_stubs, make_routed) -> None:
    limited = await make_stubs("limited")
    backup = await make_stubs("backup", text="from backup")
    gateway = await make_routed(
        [target_of(limited, 1.0, budget_limited=True), target_of(backup, 2.0)],
        split(("limited", 1), fallback=["backup"]),
    )
    status, answer = await gateway.post("/v1/chat/completions", CHAT)
    assert status == 200 and answer["choices"][0]["message"]["content"] == "from backup"
    assert limited.received == []  # never sent to
    assert gateway.sample("llm_gateway_route_requests_total", **ROUTE, target="limited",
                          outcome="fallback") == 1  # fmt: skip
    gateway.directory.set_replicas("backup-model", [])  # nothing serves: held, then 503
    status, answer = await gateway.post("/v1/chat/completions", CHAT)
    assert status == 503 and answer["error"]["code"] == "no_ready_replica"
    # The request held for `backup` and failed there; `limited` was passed over again.
    outcomes = {(labels["target"], labels["outcome"]): value for labels, value in [
        (dict(s.labels), s.value) for f in gateway.metrics.registry.collect()
        if f.name == "llm_gateway_route_requests" for s in f.samples
        if s.name.endswith("_total")
    ]}  # fmt: skip
    assert outcomes == {("limited", "fallback"): 2, ("backup", "served"): 1,
                        ("backup", "failed"): 1}  # fmt: skip


async def test_split_spreads_by_weight_and_the_route_name_wins(make_stubs, make_routed) -> None:
    a, b = await make_stubs("a"), await make_stubs("b")
    shadowed = target_of(a, None)
    shadowed = type(shadowed)("assistant", "ns", "shadow", shadowed.replicas)
    gateway = await make_routed(
        [target_of(a, None), target_of(b, None), shadowed], split(("a", 3), ("b", 1), fallback=[])
    )
    for i in range(80):
        status, _ = await gateway.post("/v1/chat/completions", {**CHAT, "user": f"u{i}"})
        assert status == 200
    assert len(a.received) + len(b.received) == 80  # the route, not the served `assistant`
    assert 40 <= len(a.received) <= 76
    assert {r["model"] for r in a.received} == {"a-model"}


async def test_a_tenant_pays_every_attempt_under_the_routes_name(make_stubs, make_routed) -> None:
    web = Tenant("team", "web", frozenset({"assistant"}), None, None, None, "day")
    other = Tenant("team", "other", frozenset({"cheap-model"}), None, None, None, "day")
    keys = [KeySecret("team", f"{t.name}-key", t.name, key_digest(f"sk-{t.name}"))
            for t in (web, other)]  # fmt: skip
    small = await make_stubs("cheap", text="I don't know.")
    large = await make_stubs("large")
    gateway = await make_routed(
        [target_of(small, CHEAP), target_of(large, LARGE)], CASCADE, TenantTable({web, other}, keys)
    )
    headers = {"Authorization": "Bearer sk-web"}
    async with gateway.session.post(
        gateway.url + "/v1/chat/completions", json=CHAT, headers=headers
    ) as response:
        assert response.status == 200
    labels = {"namespace": "team", "tenant": "web", "model": "assistant"}
    tokens = [gateway.sample("llm_gateway_tenant_tokens_total", **labels, kind=kind)
              for kind in ("prompt", "completion")]  # fmt: skip
    assert tokens == [2 * USAGE["prompt_tokens"], 2 * USAGE["completion_tokens"]]
    dollars = gateway.sample("llm_gateway_tenant_dollars_total", **labels)
    assert dollars == pytest.approx(TOKENS * (CHEAP + LARGE) / 1e6)
    assert gateway.sample("llm_gateway_tenant_requests_total", **labels, code="200") == 1
    # A tenant may call a route only by its name: a target's model is not enough.
    async with gateway.session.post(
        gateway.url + "/v1/chat/completions",
        json=CHAT,
        headers={"Authorization": "Bearer sk-other"},
    ) as response:
        assert response.status == 403
        assert (await response.json())["error"]["code"] == "model_not_allowed"


async def test_models_list_the_route_and_its_name_wins(make_stubs, make_routed) -> None:
    a = await make_stubs("a")
    shadowed = ModelTarget("assistant", "ns", "shadow", target_of(a, None).replicas)
    gateway = await make_routed([target_of(a, None), shadowed], split(("a", 1), fallback=[]))
    async with gateway.session.get(gateway.url + "/v1/models") as response:
        cards = (await response.json())["data"]
    assert [(c["id"], c["owned_by"]) for c in cards] == [
        ("a-model", "ns/a"), ("assistant", "ns/assistant"),
    ]  # fmt: skip
    async with gateway.session.get(gateway.url + "/v1/models/assistant") as response:
        assert (await response.json())["owned_by"] == "ns/assistant"


async def test_a_tenant_over_its_budget_is_served_by_the_routes_free_deployment(
    make_stubs, make_routed
) -> None:
    # $0.00001 a day: the first answer (15 tokens at $4/1M = $0.00006) spends it all.
    thrifty = Tenant("team", "thrifty", frozenset(), None, None, 0.00001, "day")
    keys = [KeySecret("team", "thrifty-key", "thrifty", key_digest("sk-thrifty"))]
    large = await make_stubs("large", text="from large")
    free = await make_stubs("free", text="from free")
    priced_only = await make_stubs("priced", text="from priced")
    gateway = await make_routed(
        [target_of(large, LARGE), target_of(free, 0.0), target_of(priced_only, CHEAP)],
        split(("large", 1), fallback=["priced", "free"]), TenantTable({thrifty}, keys),
    )  # fmt: skip
    headers = {"Authorization": "Bearer sk-thrifty"}

    async def ask() -> tuple[int, Any]:
        url = gateway.url + "/v1/chat/completions"
        async with gateway.session.post(url, json=CHAT, headers=headers) as response:
            return response.status, await response.json()

    status, answer = await ask()  # within budget: the picked target
    assert status == 200 and answer["choices"][0]["message"]["content"] == "from large"
    status, answer = await ask()  # spent: the priced ones are passed over, the free one serves
    assert status == 200 and answer["choices"][0]["message"]["content"] == "from free"
    assert (len(large.received), len(priced_only.received)) == (1, 0)
    for target in ("large", "priced"):
        assert gateway.sample("llm_gateway_route_requests_total", **ROUTE, target=target,
                              outcome="fallback") == 1  # fmt: skip
    labels = {"namespace": "team", "tenant": "thrifty", "model": "assistant"}
    assert gateway.sample("llm_gateway_tenant_dollars_total", **labels) == pytest.approx(
        TOKENS * LARGE / 1e6
    )  # the free answer cost nothing
    # Without a free deployment, a spent budget is a 429 as for a plain model.
    gateway.directory.remove("free-model")
    status, answer = await ask()
    assert status == 429 and answer["error"]["code"] == "budget_day"
