"""The shared tail of every generation handler: stream it or collect it, then clean up."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from llm_server.api.choice_group import ChoiceGroup, ChoiceResult
from llm_server.api.errors import cut_by_shutdown
from llm_server.api.response_caching import CACHE_HEADER, CacheSlot, StreamRecorder, all_finished
from llm_server.api.state import InflightLease
from llm_server.api.streaming import SSEResponse, sse_stream
from llm_server.engine.errors import EngineStoppingError

ChunkSource = Callable[[], AsyncIterator[dict[str, Any]]]
ResponseBuilder = Callable[[list[ChoiceResult]], BaseModel]


async def respond(
    request: Request,
    group: ChoiceGroup,
    lease: InflightLease,
    *,
    stream: bool,
    chunks: ChunkSource,
    build: ResponseBuilder,
    cache: CacheSlot | None = None,
) -> Response:
    """With `cache`, a complete response is stored under it (the caller already missed)."""

    def close() -> None:
        group.abort()  # no-op for finished choices; frees blocks of any still running
        lease.release()

    response: Response
    if stream:
        if cache is None:
            return SSEResponse(sse_stream(chunks()), on_close=close)
        recorder = StreamRecorder(cache, len(group.runs))
        response = SSEResponse(recorder.events(sse_stream(recorder.chunks(chunks()))), close)
    else:
        try:
            results = await group.collect(request)
            response = JSONResponse(build(results).model_dump())
        except EngineStoppingError as exc:  # the drain's grace period ran out
            raise cut_by_shutdown(str(exc)) from None
        finally:
            close()
        finished = [result.finish_reason for result in results]
        if cache is not None and all_finished(finished, len(group.runs)):
            cache.store([bytes(response.body)], streamed=False)
    if cache is not None:
        response.headers[CACHE_HEADER] = "miss"
    return response


def chunk_dict(chunk: BaseModel, include_usage: bool) -> dict[str, Any]:
    """With include_usage every chunk carries `usage: null` and the last one the totals."""
    payload = chunk.model_dump()
    if not include_usage:
        payload.pop("usage", None)
    return payload
