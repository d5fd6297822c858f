"""The FastAPI app: routes only; each handler hands off to the module that does the work."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from llm_server import __version__
from llm_server.api.auth import APIKeyAuth
from llm_server.api.body_limit import BodySizeLimit
from llm_server.api.chat import create_chat_completion
from llm_server.api.completions import create_completion
from llm_server.api.errors import install_error_handlers, internal_error
from llm_server.api.openapi import (
    CHAT_RESPONSES,
    COMPLETION_RESPONSES,
    METRICS_RESPONSES,
    MODELS_RESPONSES,
    PROBE_RESPONSES,
    install_openapi,
)
from llm_server.api.protocol import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionRequest,
    CompletionResponse,
    ModelCard,
    ModelList,
)
from llm_server.api.state import ServerState


def create_app(state: ServerState) -> FastAPI:
    app = FastAPI(title="llm-server", version=__version__, docs_url=None, redoc_url=None)
    app.state.server = state
    install_openapi(app)
    install_error_handlers(app, state.metrics)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=state.config.max_request_body_bytes,
        on_reject=lambda error: state.metrics.count_rejected(error.code or error.type),
    )
    if state.config.api_keys:  # added last: outermost, so before the body is read
        app.add_middleware(
            APIKeyAuth,
            keys=state.config.api_keys,
            on_reject=lambda error: state.metrics.count_rejected(error.code or error.type),
        )

    @app.get("/health", responses=PROBE_RESPONSES)
    async def health() -> JSONResponse:
        """Liveness: the process is up, its event loop answers and the engine loop lives."""
        if state.alive:
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "engine_failed"}, status_code=503)

    @app.get("/ready", responses=PROBE_RESPONSES)
    async def ready() -> JSONResponse:
        """Readiness: weights loaded and warmed up, not draining, engine alive."""
        if state.ready:
            return JSONResponse({"status": "ready"})
        reason = (
            "draining" if state.draining else ("engine_failed" if not state.alive else "loading")
        )
        return JSONResponse({"status": reason}, status_code=503)

    @app.get("/metrics", response_class=Response, responses=METRICS_RESPONSES)
    async def metrics() -> Response:
        body, content_type = state.metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/v1/models", responses=MODELS_RESPONSES)
    async def list_models() -> ModelList:
        cards = [
            ModelCard(
                id=name,
                created=state.started_at,
                root=state.config.model,
                max_model_len=state.max_model_len,
            )
            for name in state.config.served_model_names
        ]
        return ModelList(data=cards)

    @app.post("/v1/completions", response_model=CompletionResponse, responses=COMPLETION_RESPONSES)
    async def completions(body: CompletionRequest, request: Request) -> Response:
        return await create_completion(state, body, request)

    @app.post(
        "/v1/chat/completions",
        response_model=ChatCompletionResponse,
        responses=CHAT_RESPONSES,
    )
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        return await create_chat_completion(state, body, request)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        return internal_error(exc).response()

    return app
