"""Tenants through the gateway's request path, against a replica that reports usage as
llm-server does: keys (401), models (403), limits (429 + Retry-After), chargeback counters."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from llm_gateway.app import GATEWAY, build_app
from llm_gateway.directory import ModelTarget, Replica, StaticDirectory
from llm_gateway.settings import GatewaySettings
from llm_gateway.tenants import Tenant, TenantTable, key_digest

PROMPT_TOKENS, COMPLETION_TOKENS = 9, 4
WEB = Tenant("team", "web", frozenset(), None, None, None, "day")


@dataclass
class UsageReplica:
    """Answers with `usage` as llm-server does: in JSON answers, and in streams when asked
    (`usage: null` in every chunk, then a `choices: []` chunk with the totals)."""

    received: list[dict[str, Any]] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.received.append(body)
        self.authorizations.append(request.headers.get("Authorization"))
        usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
                 "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS}  # fmt: skip
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": "c",
                    "object": "chat.completion",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
                    "usage": usage,
                }
            )
        with_usage = (body.get("stream_options") or {}).get("include_usage") is True
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for text in ("one", "two"):
            chunk: dict[str, Any] = {
                "id": "c",
                "choices": [{"index": 0, "delta": {"content": text}}],
            }
            if with_usage:
                chunk["usage"] = None
            await response.write(
                b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"
            )
        if with_usage:
            final = {"id": "c", "choices": [], "usage": usage}
            await response.write(
                b"data: " + json.dumps(final, separators=(",", ":")).encode() + b"\n\n"
            )
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


class Keys:
    """A tenant lookup the test changes (as the watch of LLMTenants and Secrets does)."""

    def __init__(self, table: TenantTable) -> None:
        self.table = table

    def lookup(self, api_key: str) -> Tenant | None:
        return self.table.lookup(api_key)


def table(*pairs: tuple[Tenant, str]) -> TenantTable:
    from llm_gateway.tenants import KeySecret

    secrets = [KeySecret(t.namespace, f"{t.name}-key", t.name, key_digest(k)) for t, k in pairs]
    return TenantTable({t for t, _ in pairs}, secrets)


@dataclass
class Gateway:
    url: str
    session: aiohttp.ClientSession
    server: TestServer

    async def chat(
        self, key: str | None, model: str = "chat", **extra: Any
    ) -> tuple[int, Any, Any]:
        headers = {} if key is None else {"Authorization": f"Bearer {key}"}
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
        async with self.session.post(
            self.url + "/v1/chat/completions", json=body, headers=headers
        ) as r:
            raw = await r.read()
            return r.status, r.headers, raw if extra.get("stream") else json.loads(raw)

    def sample(self, name: str, **labels: str) -> float:
        value = self.server.app[GATEWAY].metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


Start = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def replica() -> AsyncIterator[tuple[UsageReplica, str]]:
    upstream = UsageReplica()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", upstream.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield upstream, str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture
async def start(replica: tuple[UsageReplica, str]) -> AsyncIterator[Start]:
    running: list[tuple[TestServer, aiohttp.ClientSession]] = []

    async def make(keys: Keys, price: float | None = 2.0, **settings: Any) -> Gateway:
        target = ModelTarget("chat", "models-ns", "chat-deploy",
                             (Replica("pod-a", replica[1], True, False),), price)  # fmt: skip
        settings.setdefault("scrape_interval_seconds", 3600.0)
        app = build_app(GatewaySettings(**settings), StaticDirectory([target]), tenants=keys)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        session = aiohttp.ClientSession()
        running.append((server, session))
        return Gateway(str(server.make_url("")).rstrip("/"), session, server)

    yield make
    for server, session in running:
        await session.close()
        await server.close()


async def test_required_key_valid_unknown_missing_and_revoked(
    start: Start, replica: tuple[UsageReplica, str]
) -> None:
    keys = Keys(table((WEB, "sk-web")))
    gateway = await start(keys, require_tenant_key=True)
    status, _, body = await gateway.chat("sk-web")
    assert status == 200 and body["usage"]["prompt_tokens"] == PROMPT_TOKENS
    assert replica[0].authorizations == ["Bearer sk-web"]  # passed through unchanged
    for key in ("sk-wrong", None):
        status, _, body = await gateway.chat(key)
        assert status == 401 and body["error"]["code"] == "invalid_api_key"
    keys.table = table()  # the Secret was deleted
    status, _, body = await gateway.chat("sk-web")
    assert status == 401 and body["error"]["type"] == "invalid_request_error"
    assert len(replica[0].received) == 1  # nothing refused reached the replica
    labels = {"namespace": "team", "tenant": "web", "model": "chat"}
    assert gateway.sample("llm_gateway_tenant_requests_total", **labels, code="200") == 1


async def test_without_required_keys_unknown_callers_are_anonymous(start: Start) -> None:
    gateway = await start(Keys(table((WEB, "sk-web"))))
    assert (await gateway.chat(None))[0] == 200
    assert (await gateway.chat("sk-someone-else"))[0] == 200
    assert (await gateway.chat("sk-web"))[0] == 200
    anonymous = {"namespace": "models-ns", "tenant": "", "model": "chat"}
    assert gateway.sample("llm_gateway_tenant_requests_total", **anonymous, code="200") == 2
    tenant = {"namespace": "team", "tenant": "web", "model": "chat"}
    assert gateway.sample("llm_gateway_tenant_requests_total", **tenant, code="200") == 1


async def test_a_model_outside_the_tenants_list_is_forbidden(start: Start) -> None:
    other = replace(WEB, models=frozenset({"embed"}))
    gateway = await start(Keys(table((other, "sk-web"))))
    status, _, body = await gateway.chat("sk-web")
    assert status == 403
    assert (body["error"]["code"], body["error"]["param"]) == ("model_not_allowed", "model")
    labels = {"namespace": "team", "tenant": "web", "model": "chat"}
    assert gateway.sample("llm_gateway_tenant_requests_total", **labels, code="403") == 1


async def test_requests_per_minute_429_with_retry_after(start: Start) -> None:
    limited = replace(WEB, requests_per_minute=2)
    gateway = await start(Keys(table((limited, "sk-web"))), replicas_hint=1)
    assert [(await gateway.chat("sk-web"))[0] for _ in range(2)] == [200, 200]
    status, headers, body = await gateway.chat("sk-web")
    assert status == 429 and body["error"]["code"] == "requests_per_minute"
    assert body["error"]["type"] == "rate_limit_error"
    assert 1 <= int(headers["Retry-After"]) <= 30
    labels = {"namespace": "team", "tenant": "web", "model": "chat"}
    assert (
        gateway.sample("llm_gateway_tenant_rejections_total", **labels, limit="requests_per_minute")
        == 1
    )
    assert gateway.sample("llm_gateway_tenant_requests_total", **labels, code="429") == 1


async def test_budget_spent_429_until_the_next_day(start: Start) -> None:
    # $2 per 1M tokens; each answer uses 13 tokens ($0.000026): the third is over $0.00005.
    budget = replace(WEB, budget_dollars=0.00005, budget_period="day")
    gateway = await start(Keys(table((budget, "sk-web"))), price=2.0)
    assert [(await gateway.chat("sk-web"))[0] for _ in range(2)] == [200, 200]
    status, headers, body = await gateway.chat("sk-web")
    assert status == 429 and body["error"]["code"] == "budget_day"
    assert body["error"]["type"] == "insufficient_quota"
    assert 1 <= int(headers["Retry-After"]) <= 86400


async def test_chargeback_counts_the_answers_usage_streamed_or_not(
    start: Start, replica: tuple[UsageReplica, str]
) -> None:
    gateway = await start(Keys(table((WEB, "sk-web"))), price=2.0)
    assert (await gateway.chat("sk-web"))[0] == 200
    status, _, streamed = await gateway.chat("sk-web", stream=True)
    assert status == 200
    # The gateway asked for usage upstream; the client, who had not, does not see it.
    assert replica[0].received[1]["stream_options"] == {"include_usage": True}
    assert b"usage" not in streamed and streamed.endswith(b"data: [DONE]\n\n")
    assert streamed.count(b"data: ") == 3  # two chunks and [DONE]
    status, _, asked = await gateway.chat(
        "sk-web", stream=True, stream_options={"include_usage": True}
    )
    assert status == 200 and b'"choices":[],"usage":{"prompt_tokens":9' in asked
    labels = {"namespace": "team", "tenant": "web", "model": "chat"}
    tokens = "llm_gateway_tenant_tokens_total"
    assert gateway.sample(tokens, **labels, kind="prompt") == 3 * PROMPT_TOKENS
    assert gateway.sample(tokens, **labels, kind="completion") == 3 * COMPLETION_TOKENS
    dollars = gateway.sample("llm_gateway_tenant_dollars_total", **labels)
    assert dollars == pytest.approx(3 * (PROMPT_TOKENS + COMPLETION_TOKENS) * 2.0 / 1e6)


async def test_tokens_of_an_unpriced_model_are_counted_as_unpriced(start: Start) -> None:
    gateway = await start(Keys(table((WEB, "sk-web"))), price=None)
    assert (await gateway.chat("sk-web"))[0] == 200
    labels = {"namespace": "team", "tenant": "web", "model": "chat"}
    assert gateway.sample("llm_gateway_tenant_dollars_total", **labels) == 0
    unpriced = gateway.sample("llm_gateway_unpriced_tokens_total", model="chat")
    assert unpriced == PROMPT_TOKENS + COMPLETION_TOKENS


async def test_tokens_per_minute_charges_the_usage(start: Start) -> None:
    # Each request is estimated at 16 tokens (its 66-byte body / 4) and uses 13: with 29 a
    # minute, the second fits only because the first was charged its 13, not its 16.
    limited = replace(WEB, tokens_per_minute=29)
    gateway = await start(Keys(table((limited, "sk-web"))))
    assert [(await gateway.chat("sk-web"))[0] for _ in range(2)] == [200, 200]
    status, headers, body = await gateway.chat("sk-web")
    assert status == 429 and body["error"]["code"] == "tokens_per_minute"
    assert int(headers["Retry-After"]) == 27  # 3 left, 13 more at 29 a minute: 26.9 s


class Syncing(Keys):
    """Tenants whose first list has not come yet."""

    def synced(self) -> bool:
        return False


@pytest.mark.parametrize(("required", "status"), [(True, 503), (False, 200)])
async def test_ready_waits_for_the_tenants_only_when_keys_are_required(
    start: Start, required: bool, status: int
) -> None:
    gateway = await start(Syncing(table()), require_tenant_key=required)
    async with gateway.session.get(gateway.url + "/readyz") as response:
        assert response.status == status
