"""Random scheduled steps for the step-input tests (CPU and GPU): decodes, fresh prefills and
chunks after a cached prefix, each sequence's KV blocks scattered over the cache."""

from __future__ import annotations

import random

import torch

from llm_server.engine.scheduler import ScheduledChunk, SchedulerOutput
from llm_server.engine.sequence import Sequence
from llm_server.sampling_params import SamplingParams


def random_batch(rng: random.Random, block_size: int) -> SchedulerOutput:
    """Decodes (some past their prompt, some not), fresh prefills and chunks after a cached
    prefix, each sequence's blocks scattered over the cache, some tables longer than needed."""
    free_blocks = list(range(1, 40_000))
    rng.shuffle(free_blocks)

    def sequence(name: str, prompt_len: int, output_len: int, tokens_needed: int) -> Sequence:
        prompt = [rng.randrange(50_000) for _ in range(prompt_len)]
        seq = Sequence(name, prompt, SamplingParams(max_tokens=8), torch.Generator())
        seq.output_token_ids = [rng.randrange(50_000) for _ in range(output_len)]
        blocks = -(-tokens_needed // block_size) + rng.randrange(3)  # spare reserved blocks
        seq.block_table = [free_blocks.pop() for _ in range(blocks)]
        return seq

    decodes = []
    for i in range(rng.randrange(0, 40)):
        prompt_len, output_len = rng.randrange(1, 300), rng.randrange(0, 60)
        seq = sequence(f"d{i}", prompt_len, output_len, prompt_len + output_len)
        start = prompt_len + output_len - 1  # the last token: its K/V are written this step
        decodes.append(ScheduledChunk(seq, start, 1, samples=rng.random() < 0.9))
    prefills = []
    for i in range(rng.randrange(0 if decodes else 1, 6)):
        prompt_len = rng.randrange(1, 400)
        start = rng.choice([0, 0, rng.randrange(prompt_len)])  # cached prefix or earlier chunk
        n = rng.randrange(1, prompt_len - start + 1)
        seq = sequence(f"p{i}", prompt_len, 0, start + n)
        prefills.append(ScheduledChunk(seq, start, n, samples=start + n == prompt_len))
    rng.shuffle(decodes)  # the builder sorts them
    return SchedulerOutput(decodes=decodes, prefills=prefills)
