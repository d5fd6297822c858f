"""One step's model inputs as plain lists: built from a scheduled batch on rank 0, sent as is
to the other tensor-parallel ranks, and turned into tensors on each rank's own device.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from llm_server.engine.scheduler import ScheduledChunk, SchedulerOutput
from llm_server.layers.attention import AttentionMetadata, PrefillSegment

# Decodes are sorted by length and split into up to this many groups of at least
# MIN_DECODE_GROUP sequences: each group gathers the KV blocks of its own longest sequence,
# not the batch's, which roughly halves the gathered (padded) keys of a mixed-length batch.
MAX_DECODE_GROUPS = 4
MIN_DECODE_GROUP = 8


@dataclass(frozen=True)
class PrefillInputs:
    token_start: int  # offset of this chunk in the step's flat token list
    num_tokens: int
    context_len: int  # tokens in the cache once this chunk is written
    block_table: list[int] | None  # None when nothing precedes the chunk in the cache


@dataclass
class ModelInputs:
    token_ids: list[int]
    positions: list[int]
    slot_mapping: list[int] | None  # None: run without touching the KV cache
    num_decode_tokens: int = 0
    decode_block_tables: list[list[int]] = field(default_factory=list)  # padded to one width
    decode_context_lens: list[int] = field(default_factory=list)
    decode_groups: list[tuple[int, int]] = field(default_factory=list)  # (end row, blocks)
    prefills: list[PrefillInputs] = field(default_factory=list)

    def tensors(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, AttentionMetadata]:
        """(token ids, positions, attention metadata) on `device`."""

        def tensor(values: list[int] | list[list[int]]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.long, device=device)

        meta = AttentionMetadata(
            slot_mapping=None if self.slot_mapping is None else tensor(self.slot_mapping),
            num_decode_tokens=self.num_decode_tokens,
            decode_groups=self.decode_groups,
        )
        if self.num_decode_tokens:
            meta.decode_block_tables = tensor(self.decode_block_tables)
            meta.decode_context_lens = tensor(self.decode_context_lens)
        for p in self.prefills:
            table = None if p.block_table is None else tensor(p.block_table)
            meta.prefills.append(PrefillSegment(p.token_start, p.num_tokens, p.context_len, table))
        return tensor(self.token_ids), tensor(self.positions), meta


def build_inputs(
    batch: SchedulerOutput, block_size: int
) -> tuple[ModelInputs, list[int], list[ScheduledChunk]]:
    """The step's inputs, the rows whose logits are sampled, and the chunks they belong to.

    Decode tokens come first (one per sequence, shortest context first), then each prefill
    chunk.
    """
    tokens: list[int] = []
    positions: list[int] = []
    slots: list[int] = []
    sample_rows: list[int] = []
    sampling_chunks: list[ScheduledChunk] = []
    inputs = ModelInputs(tokens, positions, slots, num_decode_tokens=len(batch.decodes))
    decodes = sorted_decodes(batch)
    for chunk in decodes:
        seq, pos = chunk.seq, chunk.start
        tokens.extend(seq.token_ids(pos, pos + 1))
        positions.append(pos)
        slots.append(seq.block_table[pos // block_size] * block_size + pos % block_size)
        if chunk.samples:
            sample_rows.append(len(tokens) - 1)
            sampling_chunks.append(chunk)
    if decodes:
        lens = [c.start + 1 for c in decodes]
        width = -(-lens[-1] // block_size)
        tables = [c.seq.block_table[:width] for c in decodes]
        inputs.decode_block_tables = [t + [0] * (width - len(t)) for t in tables]
        inputs.decode_context_lens = lens
        inputs.decode_groups = decode_groups(lens, block_size)
    for chunk in batch.prefills:
        seq, start, n = chunk.seq, chunk.start, chunk.num_tokens
        context_len = start + n
        table = seq.block_table[: -(-context_len // block_size)]
        inputs.prefills.append(PrefillInputs(len(tokens), n, context_len, table if start else None))
        tokens.extend(seq.token_ids(start, context_len))
        positions.extend(range(start, context_len))
        slots.extend(
            table[p // block_size] * block_size + p % block_size for p in range(start, context_len)
        )
        if chunk.samples:
            sample_rows.append(len(tokens) - 1)
            sampling_chunks.append(chunk)
    return inputs, sample_rows, sampling_chunks


def sorted_decodes(batch: SchedulerOutput) -> list[ScheduledChunk]:
    """The order of the step's decode rows (shortest context first)."""
    return sorted(batch.decodes, key=lambda c: c.start)


def chunk_rows(batch: SchedulerOutput) -> list[tuple[ScheduledChunk, int]]:
    """Each chunk with the row of its first token in the step's flat inputs."""
    rows, row = [], 0
    for chunk in sorted_decodes(batch) + batch.prefills:
        rows.append((chunk, row))
        row += chunk.num_tokens
    return rows


def decode_groups(sorted_lens: list[int], block_size: int) -> list[tuple[int, int]]:
    """(end row, blocks of its longest sequence) for equal-sized groups of sorted lengths."""
    count = len(sorted_lens)
    num_groups = max(1, min(MAX_DECODE_GROUPS, count // MIN_DECODE_GROUP))
    ends = [count * (i + 1) // num_groups for i in range(num_groups)]
    return [(end, -(-sorted_lens[end - 1] // block_size)) for end in ends]
