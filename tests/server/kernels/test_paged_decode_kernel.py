"""The paged decode attention kernel against its torch reference and against PagedAttention's
CPU path: GQA and plain multi-head, odd head sizes, block sizes 8 and 16 (and a non-power-of
two), context lengths from 1 token to many blocks, batch 1 and large batches, shuffled block
tables, and an fp8 KV cache. Tolerance: kernel_tolerance.RELATIVE_TOLERANCE."""

from __future__ import annotations

import pytest
import torch
from kernel_tolerance import DEVICE, ON_GPU, assert_close, compute_dtypes

from llm_server.kernels.paged_decode_attention import (
    paged_decode_attention,
    paged_decode_attention_reference,
)
from llm_server.layers.attention import AttentionMetadata, PagedAttention

FP8 = torch.float8_e4m3fn


def _case(
    batch: int, heads: int, kv_heads: int, head_dim: int, block_size: int, seed: int,
    cache_dtype: torch.dtype = torch.float32, dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, ...]:  # fmt: skip
    generator = torch.Generator().manual_seed(seed)
    lens = torch.randint(1, 6 * block_size, (batch,), generator=generator)
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
def test_fp8_cache_is_upcast_on_read() -> None:
    q, k_cache, v_cache, tables, lens = _case(6, 8, 2, 32, 16, seed=7, cache_dtype=FP8)
    expected = paged_decode_attention_reference(q, k_cache, v_cache, tables, lens, 0.2)
    assert_close(paged_decode_attention(q, k_cache, v_cache, tables, lens, 0.2), expected)


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
