"""Server-sent events: `data: {json}` per chunk, `data: [DONE]` at the end, and a response that
always runs its cleanup (abort the engine requests, release the in-flight lease), even when
the client disconnects before the first byte."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from llm_server.api.errors import cut_by_shutdown, internal_error
from llm_server.engine.errors import EngineStoppingError

DONE = b"data: [DONE]\n\n"


def sse_event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


async def sse_stream(chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    """Frame chunks; an engine failure mid-stream becomes an error event (the status is sent)."""
    try:
        async for chunk in chunks:
            yield sse_event(chunk)
    except EngineStoppingError as exc:  # the drain's grace period ran out
        yield sse_event(cut_by_shutdown(str(exc)).body())
    except Exception as exc:  # logged with an error id; the client gets the id, not the text
        yield sse_event(internal_error(exc, code="engine_error").body())
    yield DONE


class SSEResponse(StreamingResponse):
    def __init__(self, content: AsyncIterator[bytes], on_close: Callable[[], None]) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()
