"""The paged decode attention kernel (one program per sequence and KV head, optionally split
over the context) against its torch reference and against PagedAttention's CPU path: query
groups of 1, 2, 4 and 8 heads per KV head (multi-head, GQA, MQA), odd head sizes, block sizes
8 and 16 (and a non-power-of-two), ragged context lengths from 1 token to many tiles, batch 1
and large batches, shuffled block tables, split-K with more splits than a short context has
tiles, and an fp8 KV cache; the per-head baseline kernel on one case. Tolerance:
kernel_tolerance.RELATIVE_TOLERANCE. Shapes stay small: the interpreter is slow."""

from __future__ import annotations

import pytest
import torch
from kernel_tolerance import DEVICE, ON_GPU, assert_close, compute_dtypes

from llm_server.kernels.paged_decode_attention import (
    decode_splits,
    paged_decode_attention,
    paged_decode_attention_reference,
)
from llm_server.kernels.paged_decode_attention_per_head import paged_decode_attention_per_head
from llm_server.layers.attention import AttentionMetadata, PagedAttention

FP8 = torch.float8_e4m3fn


def _case(
    batch: int, heads: int, kv_heads: int, head_dim: int, block_size: int, seed: int,
    cache_dtype: torch.dtype = torch.float32, dtype: torch.dtype = torch.float32,
    max_len: int | None = None,
) -> tuple[torch.Tensor, ...]:  # fmt: skip
    generator = torch.Generator().manual_seed(seed)
    lens = torch.randint(1, max_len or 6 * block_size, (batch,), generator=generator)
    lens[0] = 1  # a sequence's very first decode step
    width = int(-(-lens.max().item() // block_size))
    num_blocks = batch * width + 3
    order = torch.randperm(num_blocks, generator=generator)  # blocks scattered in the cache
    tables = order[: batch * width].view(batch, width)
    shape = (num_blocks, block_size, kv_heads, head_dim)
    k_cache = torch.randn(shape, generator=generator).to(cache_dtype)
    v_cache = torch.randn(shape, generator=generator).to(cache_dtype)
    q = torch.randn(batch, heads, head_dim, generator=generator).to(dtype)
    return tuple(t.to(DEVICE) for t in (q, k_cache, v_cache, tables, lens))


@pytest.mark.parametrize("dtype", compute_dtypes())
@pytest.mark.parametrize(
    ("batch", "heads", "kv_heads", "head_dim", "block_size"),
    [
        (1, 4, 4, 16, 16),  # batch 1, multi-head
        (3, 8, 2, 40, 16),  # GQA 4:1, head size not a power of two
        (17, 6, 3, 24, 8),  # a larger batch, odd group count
        (5, 4, 1, 64, 12),  # one KV head (MQA), block size not a power of two
        (4, 16, 2, 32, 8),  # GQA 8:1
    ]
    + ([(64, 32, 8, 128, 16)] if ON_GPU else []),
)
def test_kernel_matches_reference(
    batch: int, heads: int, kv_heads: int, head_dim: int, block_size: int, dtype: torch.dtype
) -> None:
    q, k_cache, v_cache, tables, lens = _case(
        batch, heads, kv_heads, head_dim, block_size, seed=batch, cache_dtype=dtype, dtype=dtype
    )
    scale = head_dim**-0.5
    expected = paged_decode_attention_reference(q, k_cache, v_cache, tables, lens, scale)
    assert_close(paged_decode_attention(q, k_cache, v_cache, tables, lens, scale), expected)


@pytest.mark.skipif(
    ON_GPU and torch.cuda.get_device_capability() < (8, 9), reason="fp8 needs Ada or Hopper"
)
@pytest.mark.parametrize("num_splits", [1, 3])
def test_fp8_cache_is_upcast_on_read(num_splits: int) -> None:
    q, k_cache, v_cache, tables, lens = _case(6, 8, 2, 32, 16, seed=7, cache_dtype=FP8)
    expected = paged_decode_attention_reference(q, k_cache, v_cache, tables, lens, 0.2)
    out = paged_decode_attention(q, k_cache, v_cache, tables, lens, 0.2, num_splits=num_splits)
    assert_close(out, expected)


@pytest.mark.parametrize("dtype", compute_dtypes())
@pytest.mark.parametrize(
    ("heads", "kv_heads", "num_splits"),
    [(4, 4, 2), (8, 2, 3), (16, 2, 7)],  # groups 1, 4, 8; 7 splits > a short context's tiles
)
def test_split_k_matches_reference(
    heads: int, kv_heads: int, num_splits: int, dtype: torch.dtype
) -> None:
    """Contexts up to ~6 tiles, cut into slices whose partials are merged; a slice past a
    short context is empty and must weigh nothing."""
    q, k_cache, v_cache, tables, lens = _case(
        5, heads, kv_heads, 32, 16, seed=num_splits, cache_dtype=dtype, dtype=dtype, max_len=380
    )
    expected = paged_decode_attention_reference(q, k_cache, v_cache, tables, lens, 0.25)
    out = paged_decode_attention(q, k_cache, v_cache, tables, lens, 0.25, num_splits=num_splits)
    assert_close(out, expected)


def test_per_head_baseline_matches_reference() -> None:
    """The benchmark's baseline kernel still computes the same attention."""
    q, k_cache, v_cache, tables, lens = _case(3, 8, 2, 40, 16, seed=5)
    expected = paged_decode_attention_reference(q, k_cache, v_cache, tables, lens, 0.3)
    assert_close(paged_decode_attention_per_head(q, k_cache, v_cache, tables, lens, 0.3), expected)


def test_splits_only_for_long_contexts_and_few_sequences() -> None:
    processors = 132  # an H100 / H200
    assert decode_splits(programs=8, max_context=512, processors=processors) == 1  # short
    assert decode_splits(programs=32 * 8, max_context=32768, processors=processors) == 1  # busy
    assert decode_splits(programs=8, max_context=32768, processors=processors) == 32  # capped
    assert decode_splits(programs=8, max_context=4096, processors=processors) == 16  # >= 256 each
    assert decode_splits(programs=32, max_context=8192, processors=processors) == 9  # 2 waves
    assert decode_splits(programs=8, max_context=4096, processors=1) == 1  # the interpreter


def test_reference_is_what_paged_attention_computes_on_cpu() -> None:
    """The kernel's reference equals the serving layer's own CPU decode path."""
    q, k_cache, v_cache, tables, lens = (t.cpu() for t in _case(4, 8, 2, 32, 16, seed=3))
    layer = PagedAttention(num_heads=8, num_kv_heads=2, head_dim=32)
    layer.k_cache, layer.v_cache = k_cache, v_cache
    meta = AttentionMetadata(
        slot_mapping=None, num_decode_tokens=4, decode_block_tables=tables,
        decode_context_lens=lens,
    )  # fmt: skip
    empty = torch.empty(0, 2, 32)
    out = layer(q, empty, empty, meta)
    assert_close(out, paged_decode_attention_reference(q, k_cache, v_cache, tables, lens, 32**-0.5))
