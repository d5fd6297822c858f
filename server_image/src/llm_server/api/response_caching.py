"""The response cache in the HTTP layer: look up before any engine work, record on success.

A hit replays the stored bytes exactly: the JSON body, or the same server-sent events a live
stream sent, one event per body chunk, in the same order; `id` and `created` are those of the
response that was cached (so a hit is byte-identical to it). Only responses whose every choice
finished with "stop" or "length" are stored; an aborted, failed or disconnected request never
is. The `x-llm-server-cache: hit|miss` header says which happened (absent when the request
could not use the cache at all).

Entries belong to a tenant: the API key the request presented (when keys are on) and its
`user` field (none: one shared anonymous tenant). A tenant's lookup never finds another's
entry, so neither the answer nor the hit header reveals what someone else asked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

from llm_server.api.protocol import SamplingRequest
from llm_server.api.streaming import SSEResponse
from llm_server.cache.key import is_deterministic, response_cache_key
from llm_server.cache.response_cache import CachedResponse, ResponseCache

CACHE_HEADER = "x-llm-server-cache"
CACHEABLE_FINISH_REASONS = frozenset({"stop", "length"})
# Request fields that cannot change the response bytes, or that the key carries resolved
# (user: as the tenant; model: the served name answered with; prompt/messages: token ids;
# max_*: the resolved limit; stream_options: only include_usage matters).
KEY_EXCLUDED_FIELDS = frozenset({
    "user", "model", "prompt", "messages", "max_tokens", "max_completion_tokens",
    "stream_options", "add_generation_prompt", "chat_template_kwargs",
})  # fmt: skip


@dataclass(frozen=True)
class CacheSlot:
    """Where one cacheable request's response lives in the cache, found or not."""

    cache: ResponseCache
    key: bytes

    def lookup(self) -> Response | None:
        found = self.cache.get(self.key)
        return None if found is None else replay(found)

    def store(self, parts: Iterable[bytes], streamed: bool) -> None:
        self.cache.put(self.key, CachedResponse(tuple(parts), streamed))


def cache_slot(
    cache: ResponseCache | None,
    body: SamplingRequest,
    identity: Mapping[str, Any],
    resolved: Mapping[str, Any],
    keep_prompt: bool = False,
    *,
    api_key_id: str | None,
) -> CacheSlot | None:
    """None when the cache is off or the request could differ between runs."""
    if cache is None or not is_deterministic(body.temperature, body.seed):
        return None
    excluded = KEY_EXCLUDED_FIELDS - ({"prompt"} if keep_prompt else set())
    fields = {
        "identity": dict(identity),
        "tenant": {"api_key": api_key_id, "user": body.user},
        "request": body.model_dump(mode="json", exclude=set(excluded)),
        "include_usage": body.include_usage(),
        **resolved,
    }
    return CacheSlot(cache, response_cache_key(fields))


def replay(found: CachedResponse) -> Response:
    if not found.streamed:
        response = Response(found.parts[0], media_type="application/json")
    else:

        async def events() -> AsyncIterator[bytes]:
            for part in found.parts:
                yield part

        response = SSEResponse(events(), on_close=lambda: None)
    response.headers[CACHE_HEADER] = "hit"
    return response


def all_finished(finish_reasons: Iterable[str | None], num_choices: int) -> bool:
    reasons = list(finish_reasons)
    return len(reasons) == num_choices and all(r in CACHEABLE_FINISH_REASONS for r in reasons)


class StreamRecorder:
    """Tees a live stream into the cache once it has ended cleanly. Recording stops (and the
    stream is not stored) past the cache's byte bound, so a long stream cannot grow memory."""

    def __init__(self, slot: CacheSlot, num_choices: int) -> None:
        self._slot = slot
        self._num_choices = num_choices
        self._finish_reasons: dict[int, str] = {}
        self._chunks_ended = False

    async def chunks(self, source: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        """The handler's chunks, noting each choice's finish reason on the way past."""
        async for chunk in source:
            for choice in chunk.get("choices", ()):
                if choice.get("finish_reason") is not None:
                    self._finish_reasons[choice["index"]] = choice["finish_reason"]
            yield chunk
        self._chunks_ended = True  # not reached after an error or a disconnect

    async def events(self, frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The framed events as sent; stored after the last one if the stream was complete."""
        parts: list[bytes] | None = []
        size = 0
        async for frame in frames:
            if parts is not None:
                size += len(frame)
                if size <= self._slot.cache.max_bytes:
                    parts.append(frame)
                else:
                    parts = None
            yield frame
        if parts is None or not self._chunks_ended:
            return
        if all_finished(self._finish_reasons.values(), self._num_choices):
            self._slot.store(parts, streamed=True)
