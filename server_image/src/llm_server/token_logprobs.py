"""A token's logprob, rank and top alternatives: computed by the layers, returned by the API."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TokenLogprobs:
    """A prompt token's logprob, its rank in the distribution (1 = most likely) and the top-k."""

    token_id: int
    logprob: float
    rank: int
    top_logprobs: tuple[tuple[int, float], ...]
