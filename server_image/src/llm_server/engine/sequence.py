"""One request's mutable state inside the engine (the scheduler and runner read it)."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

import torch

from llm_server.engine.kv_cache import ROOT_HASH, BlockHash, block_hash
from llm_server.engine.request import FinishReason
from llm_server.sampling_params import SamplingParams
from llm_server.token_logprobs import TokenLogprobs


class SequenceStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(eq=False)
class Sequence:
    request_id: str
    prompt_token_ids: list[int]
    params: SamplingParams
    generator: torch.Generator  # owned by this request: reproducible whatever the batch
    arrival_time: float = field(default_factory=time.monotonic)
    output_token_ids: list[int] = field(default_factory=list)
    status: SequenceStatus = SequenceStatus.WAITING
    num_computed_tokens: int = 0  # tokens whose K/V are in the cache
    block_table: list[int] = field(default_factory=list)
    first_scheduled_time: float | None = None
    finish_reason: FinishReason | None = None
    num_preemptions: int = 0
    num_cached_prompt_tokens: int = 0  # prompt tokens found in the prefix cache when admitted
    num_registered_blocks: int = 0  # leading blocks of block_table offered to the prefix cache
    _block_hashes: list[BlockHash] = field(default_factory=list)  # of full blocks, chained
    banned_before_min_tokens: tuple[int, ...] = ()  # stop tokens min_tokens holds back
    # Filled as prefill chunks run (first token: None); kept across preemption.
    prompt_logprobs: list[TokenLogprobs | None] = field(default_factory=lambda: [None])

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_token_ids) + len(self.output_token_ids)

    @property
    def num_uncomputed_tokens(self) -> int:
        return self.num_tokens - self.num_computed_tokens

    def token_ids(self, start: int, end: int) -> list[int]:
        """Tokens [start, end) of prompt + output without concatenating the whole history."""
        prompt_len = len(self.prompt_token_ids)
        if end <= prompt_len:
            return self.prompt_token_ids[start:end]
        if start >= prompt_len:
            return self.output_token_ids[start - prompt_len : end - prompt_len]
        return self.prompt_token_ids[start:] + self.output_token_ids[: end - prompt_len]

    def block_hashes(self, num_blocks: int, block_size: int) -> list[BlockHash]:
        """Hashes of the first num_blocks full blocks (computed once: tokens never change)."""
        hashes = self._block_hashes
        for index in range(len(hashes), num_blocks):
            parent = hashes[-1] if hashes else ROOT_HASH
            start = index * block_size
            hashes.append(block_hash(parent, self.token_ids(start, start + block_size)))
        return hashes[:num_blocks]

    @property
    def needs_prompt_logprobs(self) -> bool:
        """Asked for and not complete: its prompt must be computed, not taken from the cache."""
        wanted = self.params.prompt_logprobs is not None
        return wanted and len(self.prompt_logprobs) < len(self.prompt_token_ids)

    @property
    def is_finished(self) -> bool:
        return self.status is SequenceStatus.FINISHED
