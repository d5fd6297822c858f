"""What `/openapi.json` says each route answers: its real response model (JSON, or server-sent
events for `stream: true`), the OpenAI error body for every status the server sends, and no
FastAPI 422 (validation errors are answered 400, see api/errors.py). Schemathesis checks the
running server against this document (tests/server/integration/test_openapi_fuzz.py)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from llm_server.api.protocol import ChatCompletionChunk, CompletionChunk

SCHEMAS = "#/components/schemas/"


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """The body api/errors.py's APIError renders (a unit test keeps the two in step)."""

    error: ErrorDetail


class HealthStatus(BaseModel):
    status: str


ResponsesDoc = dict[int | str, dict[str, Any]]

_ERROR_DESCRIPTIONS = {
    400: "Invalid request: a bad parameter, malformed JSON, or a prompt that does not fit",
    401: "Missing or wrong API key (only when the server runs with API keys)",
    404: "The model is not served here",
    413: "The request body is larger than the server accepts",
    429: "The waiting queue is full; retry after Retry-After seconds",
    500: "The server failed on this request; the message names an error id in its log",
    503: "Not ready: loading, draining or the engine failed; retry after Retry-After seconds",
}


def _errors(*statuses: int) -> ResponsesDoc:
    return {
        status: {"model": ErrorResponse, "description": _ERROR_DESCRIPTIONS[status]}
        for status in statuses
    }


def _event_stream(chunk: type[BaseModel]) -> dict[str, Any]:
    """Each event's `data` is a chunk, an error (a failure after the status was sent), or the
    final `[DONE]`."""
    payload = {"anyOf": [{"$ref": SCHEMAS + chunk.__name__}, {"$ref": SCHEMAS + "ErrorResponse"}]}
    data = {
        "anyOf": [
            {"const": "[DONE]"},
            {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": payload,
            },
        ]
    }
    schema = {"type": "object", "required": ["data"], "properties": {"data": data}}
    return {"text/event-stream": {"schema": schema}}


def _generation(chunk: type[BaseModel]) -> ResponsesDoc:
    ok = {
        "description": "The response (JSON); with `stream: true`, server-sent events",
        "content": _event_stream(chunk),
    }
    return {200: ok, **_errors(400, 401, 404, 413, 429, 500, 503)}


COMPLETION_RESPONSES = _generation(CompletionChunk)
CHAT_RESPONSES = _generation(ChatCompletionChunk)
MODELS_RESPONSES = _errors(401, 500)
PROBE_RESPONSES: ResponsesDoc = {
    200: {"model": HealthStatus, "description": "Up"},
    503: {"model": HealthStatus, "description": "Not up; `status` says why"},
    **_errors(500),
}
METRICS_RESPONSES: ResponsesDoc = {
    200: {
        "description": "Prometheus text exposition",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    },
    **_errors(500),
}
# Models only the event streams name: FastAPI does not put them in components itself.
_STREAM_MODELS: tuple[type[BaseModel], ...] = (CompletionChunk, ChatCompletionChunk)


def install_openapi(app: FastAPI) -> None:
    """Replace `app.openapi` with one that adds the stream models and drops FastAPI's 422."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _document(app: FastAPI) -> dict[str, Any]:
    document = get_openapi(
        title=app.title, version=app.version, openapi_version=app.openapi_version,
        description=app.description, routes=app.routes,
    )  # fmt: skip
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    _, defs = models_json_schema(
        [(model, "serialization") for model in _STREAM_MODELS],
        ref_template=SCHEMAS + "{model}",
    )
    for name, schema in defs.get("$defs", {}).items():
        schemas.setdefault(name, schema)
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            operation.get("responses", {}).pop("422", None)
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return document
