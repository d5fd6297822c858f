"""What crosses the boundary between the HTTP layer and the engine: plain, frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from llm_server.token_logprobs import TokenLogprobs

FinishReason = Literal["stop", "length", "abort"]


@dataclass(frozen=True)
class TokenEvent:
    """One generated token of one request, delivered in order."""

    request_id: str
    token_id: int
    logprob: float | None
    top_logprobs: tuple[tuple[int, float], ...]
    finish_reason: FinishReason | None  # None while the request is still running
    num_prompt_tokens: int
    num_cached_prompt_tokens: int = 0
    queue_time_s: float | None = None  # set on the first event: submit -> first scheduled
    # On the first event when asked for: one entry per prompt token, None for the first.
    prompt_logprobs: tuple[TokenLogprobs | None, ...] | None = None
    # Set when this request alone failed (its sampling broke); finish_reason is then "abort".
    error: str | None = None


@dataclass(frozen=True)
class EngineStats:
    """A snapshot for /metrics and the autoscaler's signals."""

    num_waiting: int
    num_running: int
    kv_cache_usage: float  # 0.0 .. 1.0 of KV blocks in use
    num_preemptions_total: int
    last_batch_size: int
    last_batch_tokens: int
    prompt_tokens_total: int
    generation_tokens_total: int
    prefix_cache_queries_total: int = 0  # prompt tokens looked up in the prefix cache
    prefix_cache_hits_total: int = 0  # of which were found there (their prefill skipped)
