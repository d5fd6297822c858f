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
    prompt_logprobs: int | None = None  # None: none; k >= 0: each prompt token's + top-k
    repetition_penalty: float = 1.0  # > 1 discourages tokens seen in the prompt or output
    frequency_penalty: float = 0.0  # subtracted once per occurrence in the output
    presence_penalty: float = 0.0  # subtracted once if the token occurs in the output
    min_p: float = 0.0  # drop tokens below min_p x the most likely token's probability
    min_tokens: int = 0  # EOS and stop_token_ids cannot be sampled before this many tokens

    @property
    def has_penalties(self) -> bool:
        return (
            self.repetition_penalty != 1.0
            or self.frequency_penalty != 0.0
            or self.presence_penalty != 0.0
        )


@dataclass(frozen=True)
class TokenLogprobs:
    """A prompt token's logprob, its rank in the distribution (1 = most likely) and the top-k."""

    token_id: int
    logprob: float
    rank: int
    top_logprobs: tuple[tuple[int, float], ...]


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
