"""Upstreams with chosen answers (text, finish reason, logprobs) and a gateway with routes,
for the route and cascade tests."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from llm_gateway.app import build_app
from llm_gateway.directory import ModelTarget, Replica, StaticDirectory
from llm_gateway.metrics import GatewayMetrics
from llm_gateway.routes import Route, RouteTable
from llm_gateway.settings import GatewaySettings
from llm_gateway.tenants import TenantLookup
from llm_operator.api.route import LLMRouteSpec

USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


@dataclass
class AnswerStub:
    """An upstream that answers every request with `text` / `finish` / `logprob` per token
    (only when asked, as llm-server does), or with `status`."""

    name: str
    text: str = "Paris."
    finish: str = "stop"
    logprob: float = -0.1
    tokens: int = 3
    status: int = 200
    received: list[dict[str, Any]] = field(default_factory=list)
    server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    def answer(self, body: dict[str, Any], chat: bool) -> dict[str, Any]:
        logprobs: Any = None
        if chat:
            if body.get("logprobs"):
                logprobs = {"content": [{"token": "t", "logprob": self.logprob, "bytes": None,
                                         "top_logprobs": []}] * self.tokens}  # fmt: skip
            choice = {"index": 0, "finish_reason": self.finish, "logprobs": logprobs,
                      "message": {"role": "assistant", "content": self.text}}  # fmt: skip
        else:
            if body.get("logprobs") is not None:
                logprobs = {"tokens": ["t"] * self.tokens, "text_offset": [0] * self.tokens,
                            "token_logprobs": [self.logprob] * self.tokens,
                            "top_logprobs": [{}] * self.tokens}  # fmt: skip
            choice = {"index": 0, "text": self.text, "finish_reason": self.finish,
                      "logprobs": logprobs}  # fmt: skip
        return {
            "id": f"id-{self.name}", "object": "chat.completion" if chat else "text_completion",
            "created": 1, "model": body["model"], "choices": [choice], "usage": USAGE,
        }  # fmt: skip

    async def generate(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.received.append(body)
        if self.status != 200:
            error = {"error": {"message": "no", "type": "x", "param": None, "code": None}}
            return web.json_response(error, status=self.status)
        chat = request.path.endswith("/chat/completions")
        answer = self.answer(body, chat)
        if not body.get("stream"):
            return web.json_response(answer)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        delta = {"index": 0, "delta": {"content": self.text}, "finish_reason": self.finish}
        head = {k: v for k, v in answer.items() if k != "usage"}
        event = {**head, "object": "chat.completion.chunk", "choices": [delta]}
        await response.write(f"data: {json.dumps(event)}\n\n".encode())
        if (body.get("stream_options") or {}).get("include_usage"):
            usage_event = {**head, "choices": [], "usage": USAGE}
            await response.write(f"data: {json.dumps(usage_event)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(text="")

    async def start(self) -> AnswerStub:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.generate)
        app.router.add_post("/v1/completions", self.generate)
        app.router.add_get("/metrics", self.metrics)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return self


def target_of(stub: AnswerStub, price: float | None, **kw: Any) -> ModelTarget:
    replica = Replica(stub.name, stub.url, ready=True, terminating=False)
    return ModelTarget(f"{stub.name}-model", "ns", stub.name, (replica,), price, **kw)


@dataclass
class RoutedGateway:
    server: TestServer
    directory: StaticDirectory
    metrics: GatewayMetrics
    session: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    async def post(self, path: str, body: Any) -> tuple[int, Any]:
        async with self.session.post(self.url + path, json=body) as response:
            return response.status, await response.json()

    def sample(self, name: str, **labels: str) -> float:
        """One sample of the metrics (0 when absent)."""
        value = self.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    def samples(self, pattern: str) -> list[str]:
        text = self.metrics.exposition().decode()
        return [line for line in text.splitlines() if re.match(pattern, line)]


MakeRouted = Callable[..., Awaitable[RoutedGateway]]


@pytest.fixture
async def make_stubs() -> AsyncIterator[Callable[..., Awaitable[AnswerStub]]]:
    started: list[AnswerStub] = []

    async def make(name: str, **kwargs: Any) -> AnswerStub:
        started.append(await AnswerStub(name, **kwargs).start())
        return started[-1]

    yield make
    for stub in started:
        assert stub.server is not None
        await stub.server.close()


@pytest.fixture
async def make_routed() -> AsyncIterator[MakeRouted]:
    running: list[RoutedGateway] = []

    async def make(
        targets: list[ModelTarget], spec: dict[str, Any], tenants: TenantLookup | None = None
    ) -> RoutedGateway:
        directory = StaticDirectory(targets)
        route = Route.of("ns", "assistant", LLMRouteSpec.model_validate(spec))
        metrics = GatewayMetrics()
        settings = GatewaySettings(scrape_interval_seconds=3600.0, hold_timeout_seconds=0.5)
        app = build_app(settings, directory, metrics, tenants, RouteTable([route]))
        server = TestServer(app, host="127.0.0.1", handler_cancellation=True)
        await server.start_server()
        running.append(RoutedGateway(server, directory, metrics, aiohttp.ClientSession()))
        return running[-1]

    yield make
    for gateway in running:
        await gateway.session.close()
        await gateway.server.close()
