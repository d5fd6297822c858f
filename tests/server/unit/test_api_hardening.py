"""Client mistakes are 400s, never 500s or retryable 429s (issue 18, item 3).
Driven through the real HTTP app on the tiny model's real AsyncEngine."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from llm_server.api.app import create_app
from llm_server.api.state import ServerState
from llm_server.config import TINY_RANDOM, ServerConfig
from llm_server.engine.async_engine import AsyncEngine
from llm_server.engine.engine import LLMEngine

MAX_WAITING = 4
JSON = {"content-type": "application/json"}


@pytest.fixture
async def client(make_engine: Callable[..., LLMEngine]) -> AsyncIterator[httpx.AsyncClient]:
    engine = AsyncEngine(make_engine(max_waiting=MAX_WAITING))
    await engine.start()
    config = ServerConfig(model=TINY_RANDOM, served_model_names=("tiny",), max_waiting=MAX_WAITING)
    state = ServerState(config)
    state.set_engine(engine)
    transport = httpx.ASGITransport(app=create_app(state), raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http
    finally:
        await engine.shutdown()


def completion(**fields: Any) -> dict[str, Any]:
    return {"prompt": "hello", "max_tokens": 2, **fields}


def chat(content: str, **fields: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}], "max_tokens": 2, **fields}


def assert_400(response: httpx.Response, code: str, param: str | None = None) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == code, error
    if param is not None:
        assert error["param"] == param, error


@pytest.mark.parametrize("seed", [2**64, 2**63, -(2**63) - 1])
async def test_seed_beyond_64_bits_is_400(client: httpx.AsyncClient, seed: int) -> None:
    response = await client.post("/v1/completions", json=completion(seed=seed))
    assert_400(response, "invalid_parameter", "seed")


async def test_largest_seed_still_works_with_n(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/completions", json=completion(seed=2**63 - 1, n=3))
    assert response.status_code == 200, response.text


async def test_lone_surrogate_in_chat_content_is_400(client: httpx.AsyncClient) -> None:
    body = b'{"messages": [{"role": "user", "content": "a\\udfffb"}], "max_tokens": 2}'
    response = await client.post("/v1/chat/completions", content=body, headers=JSON)
    assert_400(response, "invalid_parameter", "messages[0].content")


async def test_lone_surrogate_in_prompt_is_400(client: httpx.AsyncClient) -> None:
    body = b'{"prompt": ["ok", "\\ud800"], "max_tokens": 2}'
    response = await client.post("/v1/completions", content=body, headers=JSON)
    assert_400(response, "invalid_parameter", "prompt")


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_tokens", "5"), ("stream", "yes"), ("n", True), ("seed", "1"), ("echo", 1)],
)
async def test_types_are_not_coerced(client: httpx.AsyncClient, field: str, value: Any) -> None:
    response = await client.post("/v1/completions", json=completion(**{field: value}))
    assert_400(response, "invalid_parameter", field)


async def test_chat_types_are_not_coerced(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json=chat("hi", logprobs="true"))
    assert_400(response, "invalid_parameter", "logprobs")


async def test_invalid_utf8_body_is_invalid_json(client: httpx.AsyncClient) -> None:
    body = b'{"prompt": "\xff\xfe", "max_tokens": 2}'
    response = await client.post("/v1/completions", content=body, headers=JSON)
    assert_400(response, "invalid_json")


async def test_very_deep_json_is_invalid_json(client: httpx.AsyncClient) -> None:
    body = b'{"prompt": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = await client.post("/v1/chat/completions", content=body, headers=JSON)
    assert_400(response, "invalid_json")


async def test_a_batch_that_can_never_fit_is_400_not_429(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/completions", json=completion(prompt=["a", "b", "c"], n=2))
    assert_400(response, "invalid_parameter", "n")
    assert "retry-after" not in response.headers
    response = await client.post("/v1/chat/completions", json=chat("hi", n=MAX_WAITING + 1))
    assert_400(response, "invalid_parameter", "n")
    fits = await client.post("/v1/completions", json=completion(prompt=["a", "b"], n=2))
    assert fits.status_code == 200, fits.text


async def test_500_body_names_an_error_id_not_the_exception(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_submit(*_: Any, **__: Any) -> None:
        raise ValueError("secret detail /var/lib/model")

    monkeypatch.setattr(AsyncEngine, "submit", broken_submit)
    response = await client.post("/v1/completions", json=completion())
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["type"] == "server_error" and "error id err-" in error["message"]
    assert "secret" not in response.text
