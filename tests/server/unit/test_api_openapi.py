"""/openapi.json describes what the server really answers (issue 18, item 6), and the 500 the
fuzzer found (a repetition penalty that over- or underflows float32) is a 400."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from llm_server.api import errors
from llm_server.api.app import create_app
from llm_server.api.openapi import ErrorResponse
from llm_server.api.state import ServerState
from llm_server.config import TINY_RANDOM, ServerConfig
from llm_server.engine.async_engine import AsyncEngine
from llm_server.engine.engine import LLMEngine

GENERATION_STATUSES = {"200", "400", "401", "404", "413", "429", "500", "503"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return create_app(ServerState(ServerConfig(model=TINY_RANDOM))).openapi()


def responses(document: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    return dict(document["paths"][path][method]["responses"])


@pytest.mark.parametrize(
    ("path", "response_model", "chunk_model"),
    [
        ("/v1/completions", "CompletionResponse", "CompletionChunk"),
        ("/v1/chat/completions", "ChatCompletionResponse", "ChatCompletionChunk"),
    ],
)
def test_generation_routes_document_json_stream_and_errors(
    document: dict[str, Any], path: str, response_model: str, chunk_model: str
) -> None:
    documented = responses(document, path, "post")
    assert set(documented) == GENERATION_STATUSES
    ok = documented["200"]["content"]
    assert ok["application/json"]["schema"] == {"$ref": f"#/components/schemas/{response_model}"}
    event_data = ok["text/event-stream"]["schema"]["properties"]["data"]["anyOf"]
    assert event_data[0] == {"const": "[DONE]"}
    assert {"$ref": f"#/components/schemas/{chunk_model}"} in event_data[1]["contentSchema"][
        "anyOf"
    ]
    assert chunk_model in document["components"]["schemas"]
    for status in GENERATION_STATUSES - {"200"}:
        error_schema = documented[status]["content"]["application/json"]["schema"]
        assert error_schema == {"$ref": "#/components/schemas/ErrorResponse"}


def test_no_route_documents_fastapis_422(document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert "422" not in operation["responses"], (path, method)
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_other_routes_document_their_bodies(document: dict[str, Any]) -> None:
    models = responses(document, "/v1/models", "get")
    assert set(models) == {"200", "401", "500"}
    assert models["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/ModelList")
    for probe in ("/health", "/ready"):
        assert set(responses(document, probe, "get")) == {"200", "500", "503"}
    metrics = responses(document, "/metrics", "get")
    assert set(metrics["200"]["content"]) == {"text/plain"}


def test_request_schemas_admit_no_unknown_fields(document: dict[str, Any]) -> None:
    """Unknown fields are refused with a 400 naming them, so the schema must not invite them."""
    schemas = document["components"]["schemas"]
    for name in ("CompletionRequest", "ChatCompletionRequest"):
        assert schemas[name]["additionalProperties"] is False


@pytest.mark.parametrize(
    "error",
    [
        errors.invalid_param("n", "n: too many"),
        errors.model_not_found("nope"),
        errors.queue_full(1),
        errors.unavailable("draining", "draining", 1),
        errors.body_too_large(10),
        errors.invalid_json(),
        errors.internal_error(RuntimeError("boom")),
    ],
)
def test_error_bodies_match_the_documented_schema(error: errors.APIError) -> None:
    assert ErrorResponse.model_validate(error.body()).model_dump() == error.body()


@pytest.fixture
async def client(make_engine: Callable[..., LLMEngine]) -> AsyncIterator[httpx.AsyncClient]:
    engine = AsyncEngine(make_engine())
    await engine.start()
    state = ServerState(ServerConfig(model=TINY_RANDOM, served_model_names=("tiny",)))
    state.set_engine(engine)
    transport = httpx.ASGITransport(app=create_app(state), raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http
    finally:
        await engine.shutdown()


@pytest.mark.parametrize("penalty", [5e-324, 1e-300, 1e300])
async def test_repetition_penalty_beyond_float32_is_400(
    client: httpx.AsyncClient, penalty: float
) -> None:
    body = {"prompt": "hello hello", "max_tokens": 2, "repetition_penalty": penalty}
    response = await client.post("/v1/completions", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "repetition_penalty"


async def test_repetition_penalty_within_bounds_still_samples(client: httpx.AsyncClient) -> None:
    body = {"prompt": "hello hello", "max_tokens": 2, "repetition_penalty": 0.5}
    response = await client.post("/v1/completions", json=body)
    assert response.status_code == 200, response.text
