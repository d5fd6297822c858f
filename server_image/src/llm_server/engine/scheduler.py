"""Iteration-level scheduling: which sequences run this step, and how many tokens each.

Every step has a token budget. Running sequences go first (decodes before unfinished prefills,
each group in admission order); then waiting ones are admitted strictly FIFO while budget,
batch slots and KV blocks last. A prompt longer than the remaining budget is split into chunks
(chunked prefill). When a running sequence needs a block and none is free, the most recently
admitted sequence is preempted: its blocks are freed and it is recomputed later from its prompt
plus the tokens it has generated so far (preemption by recompute).

With prefix caching, a sequence being admitted first takes the cached blocks of its longest
cached prefix and starts its prefill after them; at least its last token is always computed,
so there are logits to sample from. A full block becomes findable as soon as the step that
computes it is scheduled, so requests admitted in that same step (n > 1, a burst sharing a
system prompt) already share it: they run in the same forward pass, where every layer writes
all of the step's K/V before any attention reads the cache. A preempted sequence withdraws
the blocks it had not computed yet.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from llm_server.engine.config import EngineConfig
from llm_server.engine.errors import QueueFullError
from llm_server.engine.kv_cache import BlockManager
from llm_server.engine.request import FinishReason
from llm_server.engine.sequence import Sequence, SequenceStatus


@dataclass(frozen=True)
class ScheduledChunk:
    seq: Sequence
    start: int  # position of the first token of the chunk (= tokens already cached)
    num_tokens: int
    samples: bool  # the chunk reaches the sequence's last token, so a token is sampled


@dataclass
class SchedulerOutput:
    decodes: list[ScheduledChunk] = field(default_factory=list)  # one token each
    prefills: list[ScheduledChunk] = field(default_factory=list)
    preempted: list[Sequence] = field(default_factory=list)

    @property
    def chunks(self) -> list[ScheduledChunk]:
        return self.decodes + self.prefills

    @property
    def num_tokens(self) -> int:
        return len(self.decodes) + sum(c.num_tokens for c in self.prefills)

    @property
    def is_empty(self) -> bool:
        return not self.decodes and not self.prefills


class Scheduler:
    def __init__(self, config: EngineConfig, block_manager: BlockManager) -> None:
        self.config = config
        self.blocks = block_manager
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.num_preemptions_total = 0
        self.prefix_cache_queries_total = 0  # tokens looked up at admission (as vLLM counts)
        self.prefix_cache_hits_total = 0  # of which found cached

    def add(self, seq: Sequence) -> None:
        if len(self.waiting) >= self.config.max_waiting:
            raise QueueFullError(f"{len(self.waiting)} requests already waiting")
        self.waiting.append(seq)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> SchedulerOutput:
        out = SchedulerOutput()
        budget = self.config.max_num_batched_tokens
        # Decodes first so a long chunked prompt cannot starve them.
        ordered = sorted(self.running, key=lambda s: s.num_uncomputed_tokens > 1)
        for seq in ordered:
            if budget == 0:
                break
            if seq.status is not SequenceStatus.RUNNING:
                continue  # preempted earlier in this loop
            num_tokens = min(seq.num_uncomputed_tokens, budget)
            if not self._reserve_blocks(seq, num_tokens, out):
                continue
            self._add_chunk(out, seq, num_tokens)
            budget -= num_tokens
        if not out.preempted:  # under memory pressure, admit nobody new this step
            budget = self._admit_waiting(out, budget)
        return out

    def _reserve_blocks(self, seq: Sequence, num_tokens: int, out: SchedulerOutput) -> bool:
        """Allocate blocks for the chunk, preempting the newest sequences until they fit."""
        target = seq.num_computed_tokens + num_tokens
        while not self.blocks.can_allocate(seq.block_table, target):
            victim = self.running[-1]
            self._preempt(victim, out)
            if victim is seq:
                return False
        self.blocks.allocate(seq.block_table, target)
        self._register(seq, target)
        return True

    def _admit_waiting(self, out: SchedulerOutput, budget: int) -> int:
        while self.waiting and budget > 0 and len(self.running) < self.config.max_num_seqs:
            seq = self.waiting[0]  # new or preempted: no blocks, nothing computed
            cached = self._cached_prefix(seq)
            start = len(cached) * self.blocks.block_size
            remaining = seq.num_tokens - start
            num_tokens = min(remaining, budget)
            if num_tokens < remaining and not self.config.chunked_prefill:
                break
            target = start + num_tokens
            if not self.blocks.can_allocate(seq.block_table, target, cached):
                break  # strict FIFO: nobody overtakes the head of the queue
            self.waiting.popleft()
            self.blocks.allocate(seq.block_table, target, cached)
            seq.num_computed_tokens = start
            seq.num_registered_blocks = len(cached)
            self._register(seq, target)
            seq.status = SequenceStatus.RUNNING
            if seq.first_scheduled_time is None:
                seq.first_scheduled_time = time.monotonic()
                seq.num_cached_prompt_tokens = min(start, seq.num_prompt_tokens)
            if self.blocks.enable_prefix_caching:
                self.prefix_cache_queries_total += seq.num_tokens
                self.prefix_cache_hits_total += start
            self.running.append(seq)
            self._add_chunk(out, seq, num_tokens)
            budget -= num_tokens
        return budget

    def _cached_prefix(self, seq: Sequence) -> list[int]:
        """Cached blocks for the sequence's leading full blocks, leaving its last token out."""
        if not self.blocks.enable_prefix_caching or seq.needs_prompt_logprobs:
            return []  # prompt logprobs need the logits of every prompt position
        max_blocks = (seq.num_tokens - 1) // self.blocks.block_size
        return self.blocks.find_cached(seq.block_hashes(max_blocks, self.blocks.block_size))

    def _register(self, seq: Sequence, num_tokens: int) -> None:
        """Offer the full blocks among the first num_tokens (computed by the end of this step)."""
        full = num_tokens // self.blocks.block_size
        if not self.blocks.enable_prefix_caching or full <= seq.num_registered_blocks:
            return
        hashes = seq.block_hashes(full, self.blocks.block_size)
        self.blocks.register(seq.block_table, hashes, seq.num_registered_blocks)
        seq.num_registered_blocks = full

    def _add_chunk(self, out: SchedulerOutput, seq: Sequence, num_tokens: int) -> None:
        start = seq.num_computed_tokens
        chunk = ScheduledChunk(seq, start, num_tokens, start + num_tokens == seq.num_tokens)
        (out.decodes if num_tokens == 1 else out.prefills).append(chunk)

    def _preempt(self, seq: Sequence, out: SchedulerOutput) -> None:
        self.running.remove(seq)
        # Blocks offered for this step's chunk were never computed: withdraw them first.
        self.blocks.unregister(seq.block_table, seq.num_computed_tokens // self.blocks.block_size)
        self.blocks.free(seq.block_table)  # computed hashed blocks stay findable until evicted
        seq.num_computed_tokens = 0
        seq.num_registered_blocks = 0
        seq.status = SequenceStatus.WAITING
        seq.num_preemptions += 1
        self.num_preemptions_total += 1
        self.waiting.appendleft(seq)  # first in line again, ahead of newer arrivals
        out.preempted.append(seq)
        # A chunk already scheduled for the victim this step must not run.
        out.decodes = [c for c in out.decodes if c.seq is not seq]
        out.prefills = [c for c in out.prefills if c.seq is not seq]

    def finish(self, seq: Sequence, reason: FinishReason) -> None:
        """Remove a sequence wherever it is and free its blocks."""
        if seq.status is SequenceStatus.RUNNING:
            self.running.remove(seq)
        elif seq.status is SequenceStatus.WAITING and seq in self.waiting:
            self.waiting.remove(seq)
        self.blocks.free(seq.block_table)
        seq.status = SequenceStatus.FINISHED
        seq.finish_reason = reason
