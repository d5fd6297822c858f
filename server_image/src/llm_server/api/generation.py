"""One choice of one HTTP request: an engine request turned into text deltas.

Owns the engine request's lifetime: it aborts the engine request when a stop string matches,
when the client goes away, or when the handler fails, so its KV blocks are always freed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from llm_server.api.detokenize import IncrementalDetokenizer
from llm_server.api.stop_strings import StopStringMatcher
from llm_server.engine.request import EngineStats, TokenEvent
from llm_server.metrics import ServerMetrics
from llm_server.sampling_params import SamplingParams
from llm_server.token_logprobs import TokenLogprobs


class Engine(Protocol):
    """The part of `AsyncEngine` the HTTP layer uses (see engine/async_engine.py)."""

    tokenizer: Any
    max_model_len: int

    @property
    def failed(self) -> bool: ...

    def submit(
        self, request_id: str, prompt_token_ids: list[int], params: SamplingParams
    ) -> AsyncIterator[TokenEvent]: ...

    def abort(self, request_id: str) -> None: ...

    def stats(self) -> EngineStats: ...


@dataclass(frozen=True)
class GeneratedToken:
    token_id: int
    logprob: float | None
    top_logprobs: tuple[tuple[int, float], ...]
    text_offset: int = 0  # where its text starts in the choice's generated text


@dataclass(frozen=True)
class TextOptions:
    """How a choice's tokens become its text (vLLM's names)."""

    stop_strings: list[str] = field(default_factory=list)
    include_stop_str_in_output: bool = False
    skip_special_tokens: bool = True


@dataclass
class ChoiceDelta:
    index: int
    text: str
    tokens: list[GeneratedToken] = field(default_factory=list)  # those the text shows
    finish_reason: str | None = None
    prompt_logprobs: tuple[TokenLogprobs | None, ...] | None = None  # on the first delta


class ChoiceRun:
    """Submits on construction, so a full queue surfaces (QueueFullError) before any response."""

    def __init__(
        self,
        engine: Engine,
        metrics: ServerMetrics,
        *,
        request_id: str,
        index: int,
        prompt_token_ids: list[int],
        params: SamplingParams,
        text_options: TextOptions,
        arrival_time: float,
    ) -> None:
        self.index = index
        self.request_id = request_id
        self._engine = engine
        self._metrics = metrics
        self._arrival = arrival_time
        self._num_prompt_tokens = len(prompt_token_ids)
        self._min_tokens = params.min_tokens
        self._show_stop = text_options.include_stop_str_in_output
        self._detokenizer = IncrementalDetokenizer(
            engine.tokenizer, prompt_token_ids, text_options.skip_special_tokens
        )
        self._stops = StopStringMatcher(text_options.stop_strings, self._show_stop)
        self._text_len = 0  # characters the detokenizer produced so far
        self._events = engine.submit(request_id, prompt_token_ids, params)
        self._done = False
        self.num_generated = 0
        self.num_cached_prompt_tokens = 0

    def abort(self) -> None:
        """Idempotent; frees the engine request's blocks if it is still running."""
        if not self._done:
            self._done = True
            self._engine.abort(self.request_id)

    async def deltas(self) -> AsyncIterator[ChoiceDelta]:
        """Text deltas in order; the last one carries the finish reason."""
        last_token_time = self._arrival
        finish_reason = "abort"  # if the engine stream ends without saying why
        try:
            async for event in self._events:
                now = time.monotonic()
                if self.num_generated == 0:
                    self.num_cached_prompt_tokens = event.num_cached_prompt_tokens
                    self._metrics.observe_first_token(now - self._arrival, event.queue_time_s)
                else:
                    self._metrics.observe_inter_token(now - last_token_time)
                last_token_time = now
                self.num_generated += 1
                prompt_logprobs = event.prompt_logprobs
                token = GeneratedToken(
                    event.token_id, event.logprob, event.top_logprobs, self._text_len
                )
                # EOS and stop_token_ids end the text without appearing in it (as in vLLM),
                # nor in logprobs, unless include_stop_str_in_output.
                tokens, text = [token], ""
                if event.finish_reason == "stop" and not self._show_stop:
                    tokens = []
                else:
                    text = self._add_token(event.token_id)
                if self._stops.matched:
                    finish_reason = "stop"
                    self.abort()
                    yield ChoiceDelta(self.index, text, tokens, finish_reason, prompt_logprobs)
                    return
                if event.finish_reason is not None:
                    finish_reason = event.finish_reason
                    self._done = True
                    text += self._stops.add(self._detokenizer.flush()) + self._stops.flush()
                    yield ChoiceDelta(self.index, text, tokens, finish_reason, prompt_logprobs)
                    return
                yield ChoiceDelta(self.index, text, tokens, None, prompt_logprobs)
            yield ChoiceDelta(self.index, self._stops.flush(), [], finish_reason)
        finally:
            self.abort()
            await _close(self._events)
            self._metrics.observe_finished(
                time.monotonic() - self._arrival,
                self._num_prompt_tokens,
                self.num_generated,
                finish_reason,
            )

    def _add_token(self, token_id: int) -> str:
        piece = self._detokenizer.add(token_id)
        self._text_len += len(piece)
        # Stop strings count only from the min_tokens-th token on (as in vLLM).
        return self._stops.add(piece, searchable=self.num_generated >= self._min_tokens)


async def _close(events: AsyncIterator[TokenEvent]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()
