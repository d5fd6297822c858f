"""The step's inputs built with numpy into one packed array give the same values as the
per-token Python builder they replaced (kept here as the reference), for random batches of
decodes, fresh prefills and chunks after a cached prefix; the packed array survives the
tensor-parallel channel (pickle), and the input buffer is reused without copies on CPU."""

from __future__ import annotations

import pickle
import random
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from step_batches import random_batch

from llm_server.engine.input_buffer import InputBuffer
from llm_server.engine.model_inputs import (
    ModelInputs,
    build_inputs,
    decode_groups,
    inputs_without_cache,
    sorted_decodes,
)
from llm_server.engine.scheduler import ScheduledChunk, SchedulerOutput


@dataclass
class ReferenceInputs:
    """What commit 5ebd54d's build_inputs produced, as plain lists."""

    token_ids: list[int]
    positions: list[int]
    slots: list[int]
    decode_block_tables: list[list[int]] = field(default_factory=list)
    decode_context_lens: list[int] = field(default_factory=list)
    decode_groups: list[tuple[int, int]] = field(default_factory=list)
    # (token_start, num_tokens, context_len, block table or None when nothing is cached)
    prefills: list[tuple[int, int, int, list[int] | None]] = field(default_factory=list)


def reference_build_inputs(
    batch: SchedulerOutput, block_size: int
) -> tuple[ReferenceInputs, list[int], list[ScheduledChunk]]:
    """Commit 5ebd54d's per-token builder, unchanged but for the dataclass it fills."""
    tokens: list[int] = []
    positions: list[int] = []
    slots: list[int] = []
    sample_rows: list[int] = []
    sampling_chunks: list[ScheduledChunk] = []
    inputs = ReferenceInputs(tokens, positions, slots)
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
        inputs.prefills.append((len(tokens), n, context_len, table if start else None))
        tokens.extend(seq.token_ids(start, context_len))
        positions.extend(range(start, context_len))
        slots.extend(
            table[p // block_size] * block_size + p % block_size for p in range(start, context_len)
        )
        if chunk.samples:
            sample_rows.append(len(tokens) - 1)
            sampling_chunks.append(chunk)
    return inputs, sample_rows, sampling_chunks


def assert_same_as_reference(inputs: ModelInputs, batch: SchedulerOutput, block_size: int) -> None:
    expected, expected_rows, expected_chunks = reference_build_inputs(batch, block_size)
    parts = inputs.host()
    assert parts.token_ids.tolist() == expected.token_ids
    assert parts.positions.tolist() == expected.positions
    assert parts.slot_mapping is not None and parts.slot_mapping.tolist() == expected.slots
    assert parts.decode_block_tables.tolist() == expected.decode_block_tables
    assert parts.decode_context_lens.tolist() == expected.decode_context_lens
    assert inputs.decode_groups == expected.decode_groups
    assert parts.sample_rows.tolist() == expected_rows
    prefills = []
    for p in inputs.prefills:
        table = parts.prefill_tables[p.table_start : p.table_start + p.num_blocks].tolist()
        cached = table if p.has_cached_prefix else None
        prefills.append((p.token_start, p.num_tokens, p.context_len, cached))
    assert prefills == expected.prefills
    _, chunks = build_inputs(batch, block_size)
    assert [id(c) for c in chunks] == [id(c) for c in expected_chunks]


@pytest.mark.parametrize("block_size", [1, 16, 32])
def test_random_batches_match_the_per_token_builder(block_size: int) -> None:
    rng = random.Random(block_size)
    for _ in range(40):
        batch = random_batch(rng, block_size)
        inputs, _ = build_inputs(batch, block_size)
        assert_same_as_reference(inputs, batch, block_size)


def test_reused_buffer_gives_each_step_its_own_values() -> None:
    """Steps of different sizes packed one after the other into one growing host buffer."""
    rng = random.Random(7)
    buffer = InputBuffer(torch.device("cpu"))
    for _ in range(30):
        batch = random_batch(rng, 16)
        inputs, _ = build_inputs(batch, 16, buffer.host)
        assert_same_as_reference(inputs, batch, 16)
        on_device = buffer.to_device(inputs.packed)
        assert on_device.data_ptr() == inputs.packed.ctypes.data  # CPU: no copy at all


def test_device_tensors_are_views_of_the_packed_array() -> None:
    rng = random.Random(3)
    batch = random_batch(rng, 16)
    while not batch.decodes or not any(c.start for c in batch.prefills):
        batch = random_batch(rng, 16)
    inputs, _ = build_inputs(batch, 16)
    step = inputs.on_device(torch.from_numpy(inputs.packed))
    parts = inputs.host()
    meta = step.meta
    assert step.token_ids.tolist() == parts.token_ids.tolist()
    assert step.positions.tolist() == parts.positions.tolist()
    assert meta.slot_mapping is not None and meta.num_decode_tokens == len(batch.decodes)
    assert meta.decode_block_tables is not None and meta.decode_context_lens is not None
    assert meta.decode_block_tables.tolist() == parts.decode_block_tables.tolist()
    assert meta.decode_context_lens.tolist() == parts.decode_context_lens.tolist()
    assert meta.decode_groups == inputs.decode_groups
    for segment, chunk in zip(meta.prefills, batch.prefills, strict=True):
        assert segment.context_len == chunk.start + chunk.num_tokens
        if chunk.start:
            assert segment.block_table is not None
            expected = chunk.seq.block_table[: -(-segment.context_len // 16)]
            assert segment.block_table.tolist() == expected
        else:
            assert segment.block_table is None  # attends to its own K/V only
    assert step.sample_rows.dtype == torch.long


def test_inputs_cross_the_tensor_parallel_channel() -> None:
    """The other ranks get the inputs pickled (broadcast_object_list): same parts there."""
    batch = random_batch(random.Random(11), 16)
    buffer = InputBuffer(torch.device("cpu"))
    inputs, _ = build_inputs(batch, 16, buffer.host)
    received = pickle.loads(pickle.dumps(inputs))
    assert not np.shares_memory(received.packed, inputs.packed)
    assert_same_as_reference(received, batch, 16)
    other_rank = InputBuffer(torch.device("cpu"))
    assert other_rank.to_device(received.packed).tolist() == inputs.packed.tolist()


def test_inputs_without_cache_score_one_sequence_from_position_zero() -> None:
    inputs = inputs_without_cache([5, 6, 7])
    step = inputs.on_device(torch.from_numpy(inputs.packed))
    assert step.token_ids.tolist() == [5, 6, 7] and step.positions.tolist() == [0, 1, 2]
    assert step.meta.slot_mapping is None and step.meta.num_decode_tokens == 0
    [segment] = step.meta.prefills
    assert (segment.token_start, segment.num_tokens, segment.context_len) == (0, 3, 3)
    assert segment.block_table is None
