"""Decode attention in length groups (the CPU reference path) against a per-sequence
attention over each sequence's own keys; and how build_inputs cuts sorted decodes into groups."""

from __future__ import annotations

import pytest
import torch

from llm_server.engine.model_inputs import build_inputs, decode_groups
from llm_server.engine.scheduler import ScheduledChunk, SchedulerOutput
from llm_server.engine.sequence import Sequence
from llm_server.layers.attention import AttentionMetadata, PagedAttention
from llm_server.sampling_params import SamplingParams

BLOCK = 4


def per_sequence_attention(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, tables: list[list[int]],
    lens: list[int],
) -> torch.Tensor:  # fmt: skip
    """Each sequence alone: its blocks, its first len tokens, K/V repeated per query head."""
    heads, kv_heads = q.shape[1], k_cache.shape[2]
    out = []
    for row, (table, n) in enumerate(zip(tables, lens, strict=True)):
        keys = k_cache[table].flatten(0, 1)[:n].repeat_interleave(heads // kv_heads, dim=1)
        values = v_cache[table].flatten(0, 1)[:n].repeat_interleave(heads // kv_heads, dim=1)
        scores = torch.einsum("hd,thd->ht", q[row], keys) * q.shape[-1] ** -0.5
        out.append(torch.einsum("ht,thd->hd", scores.softmax(-1), values))
    return torch.stack(out)


@pytest.mark.parametrize(("heads", "kv_heads"), [(8, 2), (4, 4), (3, 1)])
def test_grouped_decode_equals_per_sequence_attention(heads: int, kv_heads: int) -> None:
    gen = torch.Generator().manual_seed(heads)
    lens = sorted(torch.randint(1, 9 * BLOCK, (19,), generator=gen).tolist())
    widths = [-(-n // BLOCK) for n in lens]
    num_blocks = sum(widths) + 2
    order = torch.randperm(num_blocks, generator=gen).tolist()  # blocks scattered in the cache
    tables, used = [], 0
    for w in widths:
        tables.append(order[used : used + w])
        used += w
    attn = PagedAttention(heads, kv_heads, 8)
    attn.k_cache = torch.randn(num_blocks, BLOCK, kv_heads, 8, generator=gen)
    attn.v_cache = torch.randn(num_blocks, BLOCK, kv_heads, 8, generator=gen)
    q = torch.randn(len(lens), heads, 8, generator=gen)
    padded = torch.tensor([t + [0] * (max(widths) - len(t)) for t in tables])
    expected = per_sequence_attention(q, attn.k_cache, attn.v_cache, tables, lens)
    for groups in ([], decode_groups(lens, BLOCK), [(5, widths[4]), (19, widths[-1])]):
        meta = AttentionMetadata(
            slot_mapping=None,
            num_decode_tokens=len(lens),
            decode_block_tables=padded,
            decode_context_lens=torch.tensor(lens),
            decode_groups=groups,
        )
        out = attn(q, q[:, :kv_heads], q[:, :kv_heads], meta)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_decode_groups_cut_sorted_lengths_into_equal_groups() -> None:
    lens = list(range(1, 65))  # 64 decodes, one of every length
    assert decode_groups(lens, 16) == [(16, 1), (32, 2), (48, 3), (64, 4)]
    assert decode_groups(lens[:20], 16) == [(10, 1), (20, 2)]  # at least 8 rows a group
    assert decode_groups([3, 40], 16) == [(2, 3)]  # a small batch stays one group
    assert decode_groups(list(range(1, 201)), 8)[-1] == (200, 25)  # at most 4 groups
    assert len(decode_groups(list(range(1, 201)), 8)) == 4


def test_decode_rows_are_sorted_by_context_length() -> None:
    """build_inputs puts the shortest context first; sampled rows still map to their requests."""
    chunks = []
    for name, length in (("a", 30), ("b", 5), ("c", 17)):
        seq = Sequence(name, list(range(100, 100 + length)), SamplingParams(max_tokens=4),
                       torch.Generator())  # fmt: skip
        seq.block_table = [len(chunks) * 10 + i for i in range(-(-length // BLOCK))]
        chunks.append(ScheduledChunk(seq, start=length - 1, num_tokens=1, samples=True))
    inputs, sampling_chunks = build_inputs(SchedulerOutput(decodes=chunks), BLOCK)
    parts = inputs.host()
    assert parts.decode_context_lens.tolist() == [5, 17, 30]
    assert parts.token_ids.tolist() == [104, 116, 129] and parts.positions.tolist() == [4, 16, 29]
    assert [c.seq.request_id for c in sampling_chunks] == ["b", "c", "a"]
    assert parts.sample_rows.tolist() == [0, 1, 2]
    assert parts.decode_block_tables[0].tolist() == [10, 11] + [0] * 6  # padded to the longest
    assert inputs.decode_groups == [(3, 8)]
