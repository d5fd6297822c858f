"""OpenAI-style errors: `{"error": {"message", "type", "param", "code"}}` with the right status."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from llm_server.metrics import ServerMetrics

logger = logging.getLogger(__name__)


class APIError(Exception):
    """Raised anywhere below a handler; rendered as an OpenAI error body."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status_code, headers=self.headers)


def internal_error(exc: BaseException, code: str = "internal_error") -> APIError:
    """A 500 that names an error id, not the exception: the detail goes to the log only."""
    error_id = f"err-{uuid.uuid4().hex[:16]}"
    logger.error("%s: %s", error_id, code, exc_info=exc)
    return APIError(
        500,
        f"The server failed to complete this request (error id {error_id}).",
        type="server_error",
        code=code,
    )


def invalid_param(param: str, message: str) -> APIError:
    return APIError(400, message, param=param, code="invalid_parameter")


def model_not_found(model: str) -> APIError:
    return APIError(
        404,
        f"The model `{model}` does not exist.",
        param="model",
        code="model_not_found",
    )


def queue_full(retry_after_s: int) -> APIError:
    return APIError(
        429,
        "The server is at capacity: its waiting queue is full. Retry after a short delay.",
        type="rate_limit_error",
        code="queue_full",
        headers={"Retry-After": str(retry_after_s)},
    )


def unavailable(message: str, code: str, retry_after_s: int) -> APIError:
    return APIError(
        503,
        message,
        type="service_unavailable_error",
        code=code,
        headers={"Retry-After": str(retry_after_s)},
    )


def cut_by_shutdown(reason: str) -> APIError:
    """An accepted request the server stopped before it finished (drain grace period over).
    No Retry-After: this process is exiting; a retry belongs on another replica."""
    return APIError(
        503, f"The server stopped before this request finished ({reason}); retry it.",
        type="service_unavailable_error", code="shutdown",
    )  # fmt: skip


def body_too_large(limit: int) -> APIError:
    return APIError(413, f"Request body exceeds {limit} bytes.", code="request_too_large")


# FastAPI's detail when reading the body raised something other than a JSON syntax error:
# bytes that are not UTF-8, or nesting too deep for the parser (RecursionError).
FASTAPI_BODY_PARSE_ERROR = "There was an error parsing the body"


def invalid_json(detail: str = "") -> APIError:
    if not detail:
        detail = "the body is not UTF-8 JSON, or nests too deeply"
    return APIError(400, f"Malformed JSON in request body: {detail}", code="invalid_json")


def batch_never_fits(num_choices: int, max_waiting: int) -> APIError:
    return APIError(
        400,
        f"n: this request needs {num_choices} engine requests (prompts x n), more than the "
        f"server's waiting queue holds ({max_waiting}); send fewer prompts or a smaller n",
        param="n",
        code="invalid_parameter",
    )


def validation_error(exc: RequestValidationError) -> APIError:
    """FastAPI's 422 becomes OpenAI's 400, naming the first offending parameter."""
    first = exc.errors()[0] if exc.errors() else {}
    if first.get("type") == "json_invalid":
        return invalid_json(str(first.get("ctx", {}).get("error", "")))
    param = _param_from_location(first.get("loc", ()))
    message = first.get("msg", "Invalid request.")
    return APIError(
        400,
        f"{param}: {message}" if param else message,
        param=param or None,
        code="invalid_parameter",
    )


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}


def _param_from_location(location: Any) -> str:
    """`("body", "messages", 0, "content", "str")` -> `messages[0].content`: union members and
    type tags that pydantic appends to the path are not parameters."""
    parts: list[str] = []
    for part in location:
        if part == "body" and not parts:
            continue
        if isinstance(part, int):
            parts.append(f"[{part}]")
            continue
        if not part.isidentifier() or part in _TYPE_TAGS or part[:1].isupper():
            break
        parts.append(f".{part}" if parts else part)
    return "".join(parts)


def install_error_handlers(app: FastAPI, metrics: ServerMetrics) -> None:
    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, APIError)
        metrics.count_rejected(exc.code or exc.type)
        return exc.response()

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return await on_api_error(request, validation_error(exc))

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400 and exc.detail == FASTAPI_BODY_PARSE_ERROR:
            return await on_api_error(request, invalid_json())
        kind = "not_found" if exc.status_code == 404 else "http_error"
        return APIError(exc.status_code, str(exc.detail), code=kind).response()

    app.add_exception_handler(APIError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
