"""What crosses the boundary between the HTTP layer and the engine: plain, frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FinishReason = Literal["stop", "length", "abort"]


@dataclass(frozen=True)
class SamplingParams:
    """Per-request sampling; validated by the HTTP layer before it reaches the engine."""

    max_tokens: int
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 disables top-k
    seed: int | None = None
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    logprobs: int | None = None  # None: none; k >= 0: the chosen token's logprob + top-k


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
