"""No request can hold the event loop (issue 18, item 2): client chat templates are refused
unless the operator trusts them, prompts are bounded in characters before tokenizing, and
tokenizing and rendering run off the loop, so /health answers meanwhile.
Driven through the real HTTP app on the tiny model's real AsyncEngine."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from llm_server.api.app import create_app
from llm_server.api.state import ServerState
from llm_server.config import TINY_RANDOM, ServerConfig
from llm_server.engine.async_engine import AsyncEngine
from llm_server.engine.engine import LLMEngine

TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
BIG_PROMPT_CHARS = 2_000_000


@pytest.fixture
async def engine(make_engine: Callable[..., LLMEngine]) -> AsyncIterator[AsyncEngine]:
    engine = AsyncEngine(make_engine())
    await engine.start()
    yield engine
    await engine.shutdown()


def client_for(engine: AsyncEngine, **settings: Any) -> httpx.AsyncClient:
    config = ServerConfig(
        model=TINY_RANDOM, served_model_names=("tiny",),
        max_request_body_bytes=4 * BIG_PROMPT_CHARS, **settings,
    )  # fmt: skip
    state = ServerState(config)
    state.set_engine(engine)
    transport = httpx.ASGITransport(app=create_app(state), raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60)


def chat(**fields: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, **fields}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        (
            {"chat_template_kwargs": {"chat_template": TEMPLATE}},
            "chat_template_kwargs.chat_template",
        ),
        ({"chat_template": TEMPLATE}, "chat_template"),
    ],
)
async def test_client_template_is_refused_by_default(
    engine: AsyncEngine, fields: dict[str, Any], param: str
) -> None:
    async with client_for(engine) as client:
        response = await client.post("/v1/chat/completions", json=chat(**fields))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["param"], error["code"]) == (param, "chat_template_not_allowed")
    assert "--trust-request-chat-template" in error["message"]


@pytest.mark.parametrize("where", ["kwargs", "top-level"])
async def test_client_template_is_used_when_trusted(engine: AsyncEngine, where: str) -> None:
    fields = (
        {"chat_template_kwargs": {"chat_template": TEMPLATE}}
        if where == "kwargs"
        else {"chat_template": TEMPLATE}
    )
    async with client_for(engine, trust_request_chat_template=True) as client:
        with_template = await client.post("/v1/chat/completions", json=chat(**fields))
        default = await client.post("/v1/chat/completions", json=chat())
    assert with_template.status_code == 200, with_template.text
    tokens = engine.tokenizer.encode("user: hi\n", add_special_tokens=False)
    assert with_template.json()["usage"]["prompt_tokens"] == len(tokens)
    assert default.json()["usage"]["prompt_tokens"] != len(tokens)


async def test_prompt_over_the_character_limit_is_413_before_tokenizing(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*_: Any, **__: Any) -> list[int]:
        raise AssertionError("tokenized a prompt over the limit")

    monkeypatch.setattr(engine.tokenizer, "encode", never)
    async with client_for(engine, max_prompt_chars=1000) as client:
        completion = await client.post(
            "/v1/completions", json={"prompt": ["x" * 600, "y" * 600], "max_tokens": 1}
        )
        chatted = await client.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "z" * 1001}], "max_tokens": 1},
        )
    for response, param in ((completion, "prompt"), (chatted, "messages")):
        assert response.status_code == 413, response.text
        error = response.json()["error"]
        assert (error["param"], error["code"]) == (param, "prompt_too_large")


@pytest.mark.parametrize("endpoint", ["/v1/completions", "/v1/chat/completions"])
async def test_health_answers_while_a_huge_prompt_is_tokenized(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, endpoint: str
) -> None:
    """The tokenizer holds until /health has answered: on the event loop it would hold the loop
    too, and the big request would finish first."""
    encoding, health_answered = threading.Event(), threading.Event()
    encode = engine.tokenizer.encode

    def held_encode(text: str, **kwargs: Any) -> list[int]:
        encoding.set()
        health_answered.wait(timeout=10)
        return list(encode(text, **kwargs))

    monkeypatch.setattr(engine.tokenizer, "encode", held_encode)
    text = "lorem ipsum " * (BIG_PROMPT_CHARS // 12)
    body = (
        {"prompt": text, "max_tokens": 1}
        if endpoint == "/v1/completions"
        else {"messages": [{"role": "user", "content": text}], "max_tokens": 1}
    )
    async with client_for(engine, max_prompt_chars=2 * BIG_PROMPT_CHARS) as client:
        big = asyncio.create_task(client.post(endpoint, json=body))
        assert await asyncio.to_thread(encoding.wait, 30)
        health = await client.get("/health")
        finished_first = big.done()
        health_answered.set()
        response = await big
    assert health.status_code == 200
    assert not finished_first
    # Millions of tokens cannot fit the tiny model's context: a 400, after tokenizing.
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "context_length_exceeded"
