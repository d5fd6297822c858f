"""API keys and per-tenant response caching through the app, on the tiny random model
(issue 18 items 7 and 8)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from llm_server.api.app import create_app
from llm_server.api.state import ServerState
from llm_server.cli import API_KEY_ENV, parse_config
from llm_server.config import TINY_RANDOM, ServerConfig
from llm_server.engine.async_engine import AsyncEngine
from llm_server.engine.engine import LLMEngine

KEYS = ("key-one", "key-two")
CACHE = "x-llm-server-cache"
GREEDY = {"prompt": "hello", "max_tokens": 2, "temperature": 0}


@pytest.fixture
async def serve(
    make_engine: Callable[..., LLMEngine],
) -> AsyncIterator[Callable[[ServerConfig], httpx.AsyncClient]]:
    engines: list[AsyncEngine] = []
    clients: list[httpx.AsyncClient] = []

    async def start(config: ServerConfig) -> httpx.AsyncClient:
        engine = AsyncEngine(make_engine())
        await engine.start()
        engines.append(engine)
        state = ServerState(config)
        state.set_engine(engine)
        transport = httpx.ASGITransport(app=create_app(state))
        client = httpx.AsyncClient(transport=transport, base_url="http://test")
        clients.append(client)
        return client

    yield start  # type: ignore[misc]
    for client in clients:
        await client.aclose()
    for engine in engines:
        await engine.shutdown()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_401(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    error = response.json()["error"]
    assert error["type"] == "authentication_error"
    assert error["code"] == "invalid_api_key"
    assert "key-one" not in response.text


async def test_v1_needs_a_valid_bearer_key_and_probes_stay_open(serve: Any) -> None:
    config = ServerConfig(model=TINY_RANDOM, served_model_names=("tiny",), api_keys=KEYS)
    assert "key-one" not in repr(config)
    client = await serve(config)
    assert_401(await client.post("/v1/completions", json=GREEDY))
    assert_401(await client.get("/v1/models"))
    wrong_headers = [
        {"Authorization": "Bearer key-on"}, {"Authorization": "key-one"},
        {"Authorization": "Basic key-one"}, bearer("key-one-two"), bearer(""),
    ]  # fmt: skip
    for wrong in wrong_headers:
        assert_401(await client.post("/v1/completions", json=GREEDY, headers=wrong))
    for key in KEYS:
        ok = await client.post("/v1/completions", json=GREEDY, headers=bearer(key))
        assert ok.status_code == 200, ok.text
        assert (await client.get("/v1/models", headers=bearer(key))).status_code == 200
    for path in ("/health", "/ready", "/metrics"):
        assert (await client.get(path)).status_code == 200, path
    assert 'reason="invalid_api_key"' in (await client.get("/metrics")).text


async def test_no_keys_no_authentication(serve: Any) -> None:
    client = await serve(ServerConfig(model=TINY_RANDOM, served_model_names=("tiny",)))
    assert (await client.post("/v1/completions", json=GREEDY)).status_code == 200


def test_keys_from_flags_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_KEY_ENV, "env-key")
    key_file = tmp_path / "api-key"
    key_file.write_text("file-key\nsecond-file-key\n")
    argv = ["--model", TINY_RANDOM, "--api-key", "a,b", "--api-key", "a",
            "--api-key-file", str(key_file)]  # fmt: skip
    assert parse_config(argv).api_keys == ("a", "b", "env-key", "file-key", "second-file-key")
    monkeypatch.delenv(API_KEY_ENV)
    assert parse_config(["--model", TINY_RANDOM]).api_keys == ()
    key_file.write_text("\n")  # an empty Secret must not switch authentication off
    with pytest.raises(SystemExit):
        parse_config(["--model", TINY_RANDOM, "--api-key-file", str(key_file)])
    with pytest.raises(SystemExit):
        parse_config(["--model", TINY_RANDOM, "--api-key-file", str(tmp_path / "missing")])


async def cache_header(client: httpx.AsyncClient, headers: dict[str, str], **fields: Any) -> str:
    response = await client.post("/v1/completions", json={**GREEDY, **fields}, headers=headers)
    assert response.status_code == 200, response.text
    return response.headers[CACHE]


async def test_cached_answers_stay_with_their_user(serve: Any) -> None:
    config = ServerConfig(model=TINY_RANDOM, served_model_names=("tiny",), response_cache=True)
    client = await serve(config)
    assert await cache_header(client, {}, user="alice") == "miss"
    assert await cache_header(client, {}, user="bob") == "miss"  # alice's answer is hers
    assert await cache_header(client, {}) == "miss"  # the anonymous tenant, too
    assert await cache_header(client, {}, user="alice") == "hit"
    assert await cache_header(client, {}) == "hit"


async def test_cached_answers_stay_with_their_api_key(serve: Any) -> None:
    config = ServerConfig(
        model=TINY_RANDOM, served_model_names=("tiny",), response_cache=True, api_keys=KEYS
    )
    client = await serve(config)
    assert await cache_header(client, bearer("key-one"), user="same") == "miss"
    assert await cache_header(client, bearer("key-two"), user="same") == "miss"
    assert await cache_header(client, bearer("key-one"), user="same") == "hit"
