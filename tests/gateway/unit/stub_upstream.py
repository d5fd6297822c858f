"""Small aiohttp replicas on 127.0.0.1 that answer like llm-server, for the gateway's tests.

Each records what it received and answers in an OpenAI shape that names itself, so a test
knows which replica served a request. `mode` picks a behaviour: answer, hold until released,
cut a stream midway, or answer with a status (429/503) as an overloaded server does.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict


def chat_completion(name: str, model: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{name}", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": f"from {name}"}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }  # fmt: skip


def completion(name: str, model: str) -> dict[str, Any]:
    return {
        "id": f"cmpl-{name}", "object": "text_completion", "created": 1, "model": model,
        "choices": [{"index": 0, "text": f"from {name}", "finish_reason": "stop",
                     "logprobs": None}],
    }  # fmt: skip


def chunk(name: str, model: str, text: str, finish: str | None = None) -> bytes:
    event = {
        "id": f"chatcmpl-{name}", "object": "chat.completion.chunk", "created": 1,
        "model": model,
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}],
    }  # fmt: skip
    return f"data: {json.dumps(event)}\n\n".encode()


STREAM_PIECES = ("one ", "two ", "three")


@dataclass
class StubReplica:
    name: str
    mode: str = "answer"  # answer | hold | cut | status
    status: int = 429
    code: str | None = None  # the error code of a `status` answer
    queue: int = 0  # what its /metrics reports as waiting
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[CIMultiDict[str]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    holding: int = 0
    server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    async def generate(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.received.append(body)
        self.headers.append(CIMultiDict(request.headers))
        model = body["model"]
        if self.mode == "status":
            return web.json_response(
                {"error": {"message": "busy", "type": "overloaded", "param": None,
                           "code": self.code}},
                status=self.status, headers={"Retry-After": "7"},
            )  # fmt: skip
        if self.mode == "hold":
            self.holding += 1
            try:
                await self.release.wait()
            finally:
                self.holding -= 1
        if body.get("stream"):
            return await self._stream(request, model)
        if request.path.endswith("/chat/completions"):
            return web.json_response(chat_completion(self.name, model))
        return web.json_response(completion(self.name, model))

    async def _stream(self, request: web.Request, model: str) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for index, piece in enumerate(STREAM_PIECES):
            last = index == len(STREAM_PIECES) - 1
            if self.mode == "cut" and last:
                assert request.transport is not None
                request.transport.close()  # dies mid-stream
                return response
            await response.write(chunk(self.name, model, piece, "stop" if last else None))
            await asyncio.sleep(0)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def metrics(self, request: web.Request) -> web.Response:
        text = (
            "# TYPE vllm:num_requests_waiting gauge\n"
            f'vllm:num_requests_waiting{{model_name="m"}} {float(self.queue)}\n'
            "# TYPE vllm:num_requests_running gauge\n"
            f'vllm:num_requests_running{{model_name="m"}} {float(self.holding)}\n'
        )
        return web.Response(text=text)

    async def start(self) -> StubReplica:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.generate)
        app.router.add_post("/v1/completions", self.generate)
        app.router.add_get("/metrics", self.metrics)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return self

    async def close(self) -> None:
        self.release.set()
        if self.server is not None:
            await self.server.close()
