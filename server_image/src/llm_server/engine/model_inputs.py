"""One step's model inputs, packed into one int64 array: built with numpy from a scheduled
batch on rank 0 (Python runs per chunk, never per token), sent as is to the other
tensor-parallel ranks, copied to each rank's device in one copy and read there as views.

The packed array holds, back to back:
    token ids [T] | positions [T] | slots [T] (only when the step writes the KV cache) |
    decode block tables [D, W] | decode context lengths [D] | sampled rows [S] |
    each prefill chunk's block table
Decode rows come first (one per sequence, shortest context first), then each prefill chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import chain
from typing import Generic, TypeVar

import numpy as np
import torch

from llm_server.engine.scheduler import ScheduledChunk, SchedulerOutput
from llm_server.engine.sequence import Sequence
from llm_server.layers.attention import AttentionMetadata, PrefillSegment

# Decodes are sorted by length and split into up to this many groups of at least
# MIN_DECODE_GROUP sequences: each group gathers the KV blocks of its own longest sequence,
# not the batch's, which roughly halves the gathered (padded) keys of a mixed-length batch.
MAX_DECODE_GROUPS = 4
MIN_DECODE_GROUP = 8

Array = TypeVar("Array", np.ndarray, torch.Tensor)
Allocator = Callable[[int], np.ndarray]  # size -> a writable int64 host array of that size


def new_array(size: int) -> np.ndarray:
    return np.empty(size, dtype=np.int64)


@dataclass(frozen=True)
class PrefillInputs:
    token_start: int  # offset of this chunk in the step's flat token list
    num_tokens: int
    context_len: int  # tokens in the cache once this chunk is written
    table_start: int = 0  # offset of its block table in the prefill tables part
    num_blocks: int = 0  # of its block table (0: the step does not use the cache)

    @property
    def has_cached_prefix(self) -> bool:
        return self.context_len > self.num_tokens


@dataclass(frozen=True)
class InputParts(Generic[Array]):
    """Views of the packed array, on the host (numpy) or on the device (torch)."""

    token_ids: Array
    positions: Array
    slot_mapping: Array | None  # None: run without touching the KV cache
    decode_block_tables: Array  # [D, W], each row padded with block 0
    decode_context_lens: Array
    sample_rows: Array  # rows whose logits are sampled, in the order of sampling_chunks
    prefill_tables: Array


@dataclass(frozen=True)
class StepTensors:
    token_ids: torch.Tensor
    positions: torch.Tensor
    meta: AttentionMetadata
    sample_rows: torch.Tensor


@dataclass(frozen=True)
class ModelInputs:
    packed: np.ndarray  # int64, the parts in the module docstring's order
    num_tokens: int
    writes_cache: bool
    num_decode_tokens: int = 0
    decode_width: int = 0  # blocks per decode row
    decode_groups: list[tuple[int, int]] = field(default_factory=list)  # (end row, blocks)
    num_sample_rows: int = 0
    prefills: list[PrefillInputs] = field(default_factory=list)

    def split(self, packed: Array) -> InputParts[Array]:
        """The parts of `packed` (this step's array, or its copy on a device) as views."""
        t, d, w = self.num_tokens, self.num_decode_tokens, self.decode_width
        ends = np.cumsum(_part_sizes(t, self.writes_cache, d, w, self.num_sample_rows))
        slots = packed[ends[1] : ends[2]] if self.writes_cache else None
        return InputParts(
            token_ids=packed[:t],
            positions=packed[t : ends[1]],
            slot_mapping=slots,
            decode_block_tables=packed[ends[2] : ends[3]].reshape(d, w),
            decode_context_lens=packed[ends[3] : ends[4]],
            sample_rows=packed[ends[4] : ends[5]],
            prefill_tables=packed[ends[5] :],
        )

    def host(self) -> InputParts[np.ndarray]:
        return self.split(self.packed)

    def on_device(self, packed: torch.Tensor) -> StepTensors:
        """The step's tensors, as views of `packed` (this step's array on the device)."""
        parts = self.split(packed)
        meta = AttentionMetadata(
            slot_mapping=parts.slot_mapping,
            num_decode_tokens=self.num_decode_tokens,
            decode_groups=self.decode_groups,
        )
        if self.num_decode_tokens:
            meta.decode_block_tables = parts.decode_block_tables
            meta.decode_context_lens = parts.decode_context_lens
        for p in self.prefills:
            table = None
            if p.has_cached_prefix:
                table = parts.prefill_tables[p.table_start : p.table_start + p.num_blocks]
            meta.prefills.append(PrefillSegment(p.token_start, p.num_tokens, p.context_len, table))
        return StepTensors(parts.token_ids, parts.positions, meta, parts.sample_rows)


def _part_sizes(
    num_tokens: int, writes_cache: bool, decodes: int, width: int, samples: int
) -> list[int]:
    """Sizes of the parts before the prefill tables, in the module docstring's order."""
    slots = num_tokens if writes_cache else 0
    return [num_tokens, num_tokens, slots, decodes * width, decodes, samples]


def inputs_without_cache(token_ids: list[int]) -> ModelInputs:
    """One sequence from position 0, attending only to itself; the KV cache is not touched."""
    n = len(token_ids)
    packed = np.concatenate([np.asarray(token_ids, dtype=np.int64), np.arange(n)])
    return ModelInputs(packed, n, writes_cache=False, prefills=[PrefillInputs(0, n, n)])


def build_inputs(
    batch: SchedulerOutput, block_size: int, alloc: Allocator = new_array
) -> tuple[ModelInputs, list[ScheduledChunk]]:
    """The step's inputs (packed into an array from `alloc`) and the chunks that sample, in
    the order of the inputs' sample rows."""
    decodes, prefills = sorted_decodes(batch), batch.prefills
    num_decodes, num_prefills = len(decodes), len(prefills)
    positions = np.fromiter((c.start for c in decodes), np.int64, num_decodes)
    starts = np.fromiter((c.start for c in prefills), np.int64, num_prefills)
    lengths = np.fromiter((c.num_tokens for c in prefills), np.int64, num_prefills)
    prefill_blocks = -(-(starts + lengths) // block_size)
    width = -(-int(positions[-1] + 1) // block_size) if num_decodes else 0
    groups = decode_groups((positions + 1).tolist(), block_size) if num_decodes else []
    token_starts = num_decodes + np.cumsum(lengths) - lengths
    table_starts = np.cumsum(prefill_blocks) - prefill_blocks
    rows = [row for row, c in enumerate(decodes) if c.samples]
    rows += [
        int(row) + c.num_tokens - 1
        for row, c in zip(token_starts, prefills, strict=True)
        if c.samples
    ]
    sampling_chunks = [c for c in decodes if c.samples] + [c for c in prefills if c.samples]
    num_tokens = num_decodes + int(lengths.sum())
    parts_before_tables = _part_sizes(num_tokens, True, num_decodes, width, len(rows))
    size = sum(parts_before_tables) + int(prefill_blocks.sum())
    inputs = ModelInputs(
        packed=alloc(size),
        num_tokens=num_tokens,
        writes_cache=True,
        num_decode_tokens=num_decodes,
        decode_width=width,
        decode_groups=groups,
        num_sample_rows=len(rows),
        prefills=[
            PrefillInputs(*values)
            for values in zip(
                token_starts.tolist(),
                lengths.tolist(),
                (starts + lengths).tolist(),
                table_starts.tolist(),
                prefill_blocks.tolist(),
                strict=True,
            )
        ],
    )
    parts = inputs.host()
    if num_decodes:
        _fill_decodes(parts, decodes, positions, block_size)
    if num_prefills:
        _fill_prefills(parts, prefills, starts, lengths, prefill_blocks, block_size)
    parts.sample_rows[:] = rows
    return inputs, sampling_chunks


def _fill_decodes(
    parts: InputParts[np.ndarray],
    decodes: list[ScheduledChunk],
    positions: np.ndarray,
    block_size: int,
) -> None:
    count = len(decodes)
    parts.token_ids[:count] = [_token_at(c.seq, c.start) for c in decodes]
    parts.positions[:count] = positions
    parts.decode_context_lens[:] = positions + 1
    # Each row's table up to the batch's width, padded with block 0 (masked by its length).
    tables = parts.decode_block_tables
    width = tables.shape[1]
    widths = np.fromiter((min(len(c.seq.block_table), width) for c in decodes), np.int64, count)
    blocks = chain.from_iterable(c.seq.block_table[:width] for c in decodes)
    tables[:] = 0
    tables[np.arange(width) < widths[:, None]] = np.fromiter(blocks, np.int64, int(widths.sum()))
    assert parts.slot_mapping is not None
    rows = np.arange(count)
    slots = tables[rows, positions // block_size] * block_size + positions % block_size
    parts.slot_mapping[:count] = slots


def _fill_prefills(
    parts: InputParts[np.ndarray],
    prefills: list[ScheduledChunk],
    starts: np.ndarray,
    lengths: np.ndarray,
    num_blocks: np.ndarray,
    block_size: int,
) -> None:
    first = parts.token_ids.shape[0] - int(lengths.sum())  # the decode rows come before
    count = parts.token_ids.shape[0] - first
    ends = (starts + lengths).tolist()
    tokens = chain.from_iterable(
        c.seq.token_ids(c.start, end) for c, end in zip(prefills, ends, strict=True)
    )
    parts.token_ids[first:] = np.fromiter(tokens, np.int64, count)
    tables = chain.from_iterable(
        c.seq.block_table[:n] for c, n in zip(prefills, num_blocks.tolist(), strict=True)
    )
    parts.prefill_tables[:] = np.fromiter(tables, np.int64, parts.prefill_tables.shape[0])
    # Token i of the prefill rows is at position i - (its chunk's first row) + its chunk's start.
    chunk_first_rows = np.cumsum(lengths) - lengths
    positions = np.arange(count) + np.repeat(starts - chunk_first_rows, lengths)
    parts.positions[first:] = positions
    table_starts = np.cumsum(num_blocks) - num_blocks
    blocks = parts.prefill_tables[np.repeat(table_starts, lengths) + positions // block_size]
    assert parts.slot_mapping is not None
    parts.slot_mapping[first:] = blocks * block_size + positions % block_size


def _token_at(seq: Sequence, position: int) -> int:
    prompt_len = len(seq.prompt_token_ids)
    if position < prompt_len:
        return seq.prompt_token_ids[position]
    return seq.output_token_ids[position - prompt_len]


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
