# mypy: disable-error-code="untyped-decorator,no-untyped-def"
# (triton.jit kernels take untyped pointer and constexpr arguments)
"""The first decode attention kernel, kept only as the baseline of
benchmarks/quant_gpu_decode.py (the server runs paged_decode_attention.py).

One program per (sequence, query head): it walks the sequence's block table, loads each
block's keys and values for its KV head straight from the cache, and keeps an online softmax
in float32. Under grouped-query attention every query head of a group reads the same KV head
again (4-8x the KV bytes), and a long context runs in one program, so few sequences leave
most of the GPU idle: what the grouped, split-K kernel fixes.

Its torch reference is paged_decode_attention.paged_decode_attention_reference.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _per_head_decode_kernel(q_ptr, k_ptr, v_ptr, table_ptr, len_ptr, out_ptr, scale,
                         stride_qb, stride_qh, stride_cb, stride_ct, stride_ch,
                         stride_tb, stride_ob, stride_oh, BLOCK_SIZE, HEAD_DIM,
                         GROUP: tl.constexpr, BLOCK_T: tl.constexpr,
                         BLOCK_D: tl.constexpr):  # fmt: skip
    seq = tl.program_id(0)
    head = tl.program_id(1)
    kv_head = head // GROUP
    context_len = tl.load(len_ptr + seq)
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < HEAD_DIM
    offs_t = tl.arange(0, BLOCK_T)
    q = tl.load(q_ptr + seq * stride_qb + head * stride_qh + offs_d, mask=mask_d, other=0.0)
    q = q.to(tl.float32) * scale
    running_max = tl.full((), float("-inf"), tl.float32)
    running_sum = tl.zeros((), dtype=tl.float32)
    acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    for i in range(0, tl.cdiv(context_len, BLOCK_SIZE)):
        block = tl.load(table_ptr + seq * stride_tb + i)
        mask_t = (offs_t < BLOCK_SIZE) & (i * BLOCK_SIZE + offs_t < context_len)
        offsets = (block * stride_cb + offs_t[:, None] * stride_ct + kv_head * stride_ch
                   + offs_d[None, :])  # fmt: skip
        mask = mask_t[:, None] & mask_d[None, :]
        k = tl.load(k_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
        scores = tl.sum(k * q[None, :], axis=1)
        scores = tl.where(mask_t, scores, float("-inf"))
        new_max = tl.maximum(running_max, tl.max(scores, axis=0))
        weights = tl.exp(scores - new_max)
        correction = tl.exp(running_max - new_max)
        v = tl.load(v_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
        acc = acc * correction + tl.sum(weights[:, None] * v, axis=0)
        running_sum = running_sum * correction + tl.sum(weights, axis=0)
        running_max = new_max
    out = acc / running_sum
    tl.store(out_ptr + seq * stride_ob + head * stride_oh + offs_d,
             out.to(out_ptr.dtype.element_ty), mask=mask_d)  # fmt: skip


def paged_decode_attention_per_head(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """Same contract as the reference; every context length must be >= 1."""
    batch, heads, head_dim = q.shape
    _, block_size, kv_heads, _ = k_cache.shape
    assert heads % kv_heads == 0 and k_cache.stride() == v_cache.stride()
    assert k_cache.stride(3) == 1 and q.stride(2) == 1
    out = torch.empty_like(q)
    tables = block_tables.contiguous()
    _per_head_decode_kernel[(batch, heads)](
        q, k_cache, v_cache, tables, context_lens, out, scale,
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        tables.stride(0), out.stride(0), out.stride(1), block_size, head_dim,
        GROUP=heads // kv_heads, BLOCK_T=triton.next_power_of_2(block_size),
        BLOCK_D=triton.next_power_of_2(head_dim),
    )  # fmt: skip
    return out
