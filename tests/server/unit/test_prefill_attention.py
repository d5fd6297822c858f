"""Prefill attention through SDPA (causal runs batched by length, chunks after a cached prefix
read from the paged cache with a bottom-right causal mask) against each sequence attended
alone over its whole history, written out with einsum; under GQA and MHA, mixed with decodes."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from llm_server.layers.attention import AttentionMetadata, PagedAttention, PrefillSegment

BLOCK = 4
HEAD_DIM = 8


@dataclass
class History:
    """One sequence: all its keys and values so far; `cached` of them are in the paged cache
    before the step, the rest are this step's chunk (or its one decode token)."""

    keys: torch.Tensor  # [tokens, kv_heads, dim]
    values: torch.Tensor
    cached: int
    blocks: list[int]

    @property
    def chunk(self) -> int:
        return self.keys.shape[0] - self.cached


def reference(q: torch.Tensor, history: History, heads: int) -> torch.Tensor:
    """The chunk's queries alone over the sequence's keys: query i sees keys 0..cached+i."""
    repeat = heads // history.keys.shape[1]
    keys = history.keys.repeat_interleave(repeat, dim=1)
    values = history.values.repeat_interleave(repeat, dim=1)
    scores = torch.einsum("qhd,khd->hqk", q, keys) * HEAD_DIM**-0.5
    query_pos = torch.arange(history.cached, keys.shape[0])
    visible = torch.arange(keys.shape[0])[None, :] <= query_pos[:, None]
    scores = scores.masked_fill(~visible, float("-inf"))
    return torch.einsum("hqk,khd->qhd", scores.softmax(-1), values)


def run_step(
    heads: int, kv_heads: int, decodes: list[int], prefills: list[tuple[int, int]], seed: int
) -> tuple[torch.Tensor, torch.Tensor, AttentionMetadata]:
    """decodes: context lengths; prefills: (cached prefix, chunk length). Returns the layer's
    output, the per-sequence reference and the metadata it ran with."""
    gen = torch.Generator().manual_seed(seed)
    shapes = [(n - 1, 1) for n in decodes] + list(prefills)
    num_blocks = sum(-(-(c + n) // BLOCK) for c, n in shapes) + 3
    order = torch.randperm(num_blocks, generator=gen).tolist()  # blocks scattered in the cache
    attn = PagedAttention(heads, kv_heads, HEAD_DIM)
    attn.k_cache = torch.randn(num_blocks, BLOCK, kv_heads, HEAD_DIM, generator=gen)
    attn.v_cache = torch.randn(num_blocks, BLOCK, kv_heads, HEAD_DIM, generator=gen)
    histories = []
    for cached, n in shapes:
        blocks = [order.pop() for _ in range(-(-(cached + n) // BLOCK))]
        keys = torch.randn(cached + n, kv_heads, HEAD_DIM, generator=gen)
        values = torch.randn(cached + n, kv_heads, HEAD_DIM, generator=gen)
        for pos in range(cached):  # the prefix is already in the cache
            attn.k_cache[blocks[pos // BLOCK], pos % BLOCK] = keys[pos]
            attn.v_cache[blocks[pos // BLOCK], pos % BLOCK] = values[pos]
        histories.append(History(keys, values, cached, blocks))
    slots = [h.blocks[p // BLOCK] * BLOCK + p % BLOCK for h in histories
             for p in range(h.cached, h.cached + h.chunk)]  # fmt: skip
    new_k = torch.cat([h.keys[h.cached :] for h in histories])
    new_v = torch.cat([h.values[h.cached :] for h in histories])
    q = torch.randn(new_k.shape[0], heads, HEAD_DIM, generator=gen)
    meta = AttentionMetadata(slot_mapping=torch.tensor(slots), num_decode_tokens=len(decodes))
    if decodes:
        width = max(len(h.blocks) for h in histories[: len(decodes)])
        tables = [h.blocks + [0] * (width - len(h.blocks)) for h in histories[: len(decodes)]]
        meta.decode_block_tables = torch.tensor(tables)
        meta.decode_context_lens = torch.tensor(decodes)
    row = len(decodes)
    for h in histories[len(decodes) :]:
        table = torch.tensor(h.blocks) if h.cached else None
        meta.prefills.append(PrefillSegment(row, h.chunk, h.cached + h.chunk, table))
        row += h.chunk
    out = attn(q, new_k, new_v, meta)
    expected, row = [], 0
    for h in histories:
        expected.append(reference(q[row : row + h.chunk], h, heads))
        row += h.chunk
    return out, torch.cat(expected), meta


HEADS = pytest.mark.parametrize(("heads", "kv_heads"), [(8, 2), (4, 4), (3, 1)])


@HEADS
def test_fresh_prefills_of_one_length_are_one_batched_causal_call(
    heads: int, kv_heads: int
) -> None:
    out, expected, meta = run_step(heads, kv_heads, [], [(0, 9), (0, 9), (0, 9), (0, 5)], seed=1)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    plan = meta.prefill_plan()
    assert [(r.rows, r.batch, r.mask is None) for r in plan] == [
        (slice(0, 27), 3, True),
        (slice(27, 32), 1, True),
    ]


@HEADS
def test_chunks_after_a_cached_prefix(heads: int, kv_heads: int) -> None:
    """Prefix-cache hits and later chunks of a chunked prefill, prefixes of any alignment,
    between fresh prefills (which must not batch across them)."""
    prefills = [(0, 6), (8, 5), (0, 6), (13, 1), (3, 12), (0, 6)]
    out, expected, meta = run_step(heads, kv_heads, [], prefills, seed=2)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert [r.batch for r in meta.prefill_plan()] == [1] * 6
    masked = [r.mask is not None for r in meta.prefill_plan()]
    assert masked == [False, True, False, True, True, False]


@HEADS
def test_decodes_and_prefills_in_one_step(heads: int, kv_heads: int) -> None:
    out, expected, _ = run_step(heads, kv_heads, [3, 9, 17], [(0, 7), (7, 7), (0, 7)], seed=3)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_one_fresh_prefill_alone() -> None:
    """The common first step: the layer returns the SDPA output without an extra copy."""
    out, expected, _ = run_step(8, 2, [], [(0, 21)], seed=4)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_chunked_prefill_equals_the_whole_prompt_at_once() -> None:
    """A 23-token prompt in chunks of 8, 8, 7 (each after the previous ones in the cache)
    attends exactly like the prompt in one chunk."""
    gen = torch.Generator().manual_seed(5)
    attn = PagedAttention(6, 2, HEAD_DIM)
    q = torch.randn(23, 6, HEAD_DIM, generator=gen)
    k = torch.randn(23, 2, HEAD_DIM, generator=gen)
    v = torch.randn(23, 2, HEAD_DIM, generator=gen)
    table = torch.tensor([4, 0, 5, 2, 1, 3])
    slots = table[torch.arange(23) // BLOCK] * BLOCK + torch.arange(23) % BLOCK

    def chunk(start: int, end: int) -> torch.Tensor:
        segment = PrefillSegment(0, end - start, end, table if start else None)
        meta = AttentionMetadata(slot_mapping=slots[start:end], prefills=[segment])
        out: torch.Tensor = attn(q[start:end], k[start:end], v[start:end], meta)
        return out

    attn.k_cache, attn.v_cache = (torch.zeros(6, BLOCK, 2, HEAD_DIM) for _ in range(2))
    whole = chunk(0, 23)
    attn.k_cache, attn.v_cache = (torch.zeros(6, BLOCK, 2, HEAD_DIM) for _ in range(2))
    pieces = torch.cat([chunk(0, 8), chunk(8, 16), chunk(16, 23)])
    torch.testing.assert_close(pieces, whole, rtol=1e-5, atol=1e-5)
