# mypy: disable-error-code="untyped-decorator,no-untyped-def"
# (triton.jit kernels take untyped pointer and constexpr arguments)
"""Decode attention over the paged KV cache, reading blocks in place through the block table.

One program per (sequence, KV head, split). It loads the queries of every head sharing that
KV head as one [group, head_dim] tile, so each KV block is read once per sequence rather than
once per query head (grouped-query attention), and walks its slice of the context a tile of
tokens at a time: each token's block comes from the block table, scores and the weighted sum
of values are two tl.dot calls, and an online softmax (running max, running sum, rescaled
accumulator) per query row is kept in float32. An fp8 cache is upcast as it is loaded.

Split-K: with few sequences and long contexts, (sequence, KV head) programs alone leave most
of the GPU idle, so each context is cut into `num_splits` slices attended in parallel; each
writes its normalized output and log-sum-exp, and merge_attention_splits combines them.
`decode_splits` picks the count from what the host knows without a sync (shapes, not lengths).

The torch reference is `paged_decode_attention_reference` below (the same gather + SDPA
computation PagedAttention runs on CPU).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from llm_server.kernels.merge_attention_splits import merge_attention_splits

# A tensor-core tile (mma m16n8k16) has 16 rows: a group of 1-8 query heads is padded to 16
# (masked loads of zeros, never stored). Triton 3.x would pad a smaller M itself, but older
# releases refuse M < 16 and the MMA spends the 16 rows either way. The depth (head_dim) must
# be >= 16 for 16-bit inputs, so BLOCK_D is padded too.
MIN_DOT = 16
TILE_TOKENS = (
    64  # keys per step of a program's walk (any block size: each token's block is looked up)
)
SPLIT_MIN_TOKENS = 1024  # shorter contexts: one program per (sequence, KV head) is quick enough
SPLIT_MIN_TOKENS_EACH = 256  # a split shorter than this costs more in the merge than it saves
MAX_SPLITS = 32


def paged_decode_attention_reference(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """q [B, H, D]; caches [blocks, block_size, KVH, D]; tables [B, W]; lens [B] -> [B, H, D]."""
    batch, heads, head_dim = q.shape
    kv_heads = k_cache.shape[2]

    def gather(cache: torch.Tensor) -> torch.Tensor:
        blocks = cache.index_select(0, block_tables.reshape(-1)).float()
        return blocks.view(batch, -1, kv_heads, head_dim).transpose(1, 2)

    keys, values = gather(k_cache), gather(v_cache)
    valid = torch.arange(keys.shape[2], device=q.device)[None, :] < context_lens[:, None]
    out = F.scaled_dot_product_attention(
        q.float().view(batch, heads, 1, head_dim), keys, values,
        attn_mask=valid[:, None, None, :], scale=scale, enable_gqa=True,
    )  # fmt: skip
    return out.view(batch, heads, head_dim).to(q.dtype)


def decode_splits(programs: int, max_context: int, processors: int) -> int:
    """Slices per context: enough (sequence, KV head, split) programs to fill `processors`
    twice over when contexts are long and sequences few; 1 when there is enough work already."""
    if max_context < SPLIT_MIN_TOKENS or programs >= processors:
        return 1
    wanted = -(-2 * processors // programs)
    return max(1, min(MAX_SPLITS, wanted, max_context // SPLIT_MIN_TOKENS_EACH))


@triton.jit
def _grouped_decode_kernel(q_ptr, k_ptr, v_ptr, table_ptr, len_ptr, out_ptr, lse_ptr, scale,
                           stride_qb, stride_qh, stride_cb, stride_ct, stride_ch, stride_tb,
                           stride_ob, stride_oh, stride_os, stride_lb, stride_lh,
                           BLOCK_SIZE, HEAD_DIM, GROUP: tl.constexpr,
                           NUM_SPLITS: tl.constexpr, BLOCK_G: tl.constexpr,
                           TILE: tl.constexpr, BLOCK_D: tl.constexpr,
                           PRECISION: tl.constexpr):  # fmt: skip
    seq = tl.program_id(0)
    kv_head = tl.program_id(1)
    split = tl.program_id(2)
    context_len = tl.load(len_ptr + seq)
    # This split's tokens, in whole tiles so that only a context's last tile is partial; with
    # more splits than tiles the last splits are empty (they write lse = -inf).
    per_split = tl.cdiv(tl.cdiv(context_len, NUM_SPLITS), TILE) * TILE
    start = split * per_split
    end = tl.minimum(start + per_split, context_len)
    offs_g = tl.arange(0, BLOCK_G)
    offs_t = tl.arange(0, TILE)
    offs_d = tl.arange(0, BLOCK_D)
    mask_g = offs_g < GROUP
    mask_d = offs_d < HEAD_DIM
    heads = kv_head * GROUP + offs_g
    q_mask = mask_g[:, None] & mask_d[None, :]
    q = tl.load(q_ptr + seq * stride_qb + heads[:, None] * stride_qh + offs_d[None, :],
                mask=q_mask, other=0.0)  # fmt: skip
    running_max = tl.full((BLOCK_G,), float("-inf"), tl.float32)
    running_sum = tl.zeros((BLOCK_G,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_G, BLOCK_D), dtype=tl.float32)
    for tile_start in range(start, end, TILE):
        pos = tile_start + offs_t
        mask_t = pos < end
        block = tl.load(table_ptr + seq * stride_tb + pos // BLOCK_SIZE, mask=mask_t, other=0)
        offsets = (block[:, None] * stride_cb + (pos % BLOCK_SIZE)[:, None] * stride_ct
                   + kv_head * stride_ch + offs_d[None, :])  # fmt: skip
        kv_mask = mask_t[:, None] & mask_d[None, :]
        k = tl.load(k_ptr + offsets, mask=kv_mask, other=0.0).to(q.dtype)
        scores = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale  # [BLOCK_G, TILE]
        scores = tl.where(mask_t[None, :], scores, float("-inf"))
        new_max = tl.maximum(running_max, tl.max(scores, axis=1))
        weights = tl.exp(scores - new_max[:, None])
        correction = tl.exp(running_max - new_max)
        v = tl.load(v_ptr + offsets, mask=kv_mask, other=0.0).to(q.dtype)
        acc = acc * correction[:, None] + tl.dot(weights.to(q.dtype), v, input_precision=PRECISION)
        running_sum = running_sum * correction + tl.sum(weights, axis=1)
        running_max = new_max
    out_offsets = seq * stride_ob + heads[:, None] * stride_oh + split * stride_os + offs_d[None, :]
    if NUM_SPLITS == 1:  # every context has at least one token: the sum is positive
        out = acc / running_sum[:, None]
        tl.store(out_ptr + out_offsets, out.to(out_ptr.dtype.element_ty), mask=q_mask)
    else:
        seen = running_sum > 0
        safe_sum = tl.where(seen, running_sum, 1.0)
        tl.store(out_ptr + out_offsets, acc / safe_sum[:, None], mask=q_mask)
        lse = tl.where(seen, running_max + tl.log(safe_sum), float("-inf"))
        tl.store(lse_ptr + seq * stride_lb + heads * stride_lh + split, lse, mask=mask_g)


def paged_decode_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
    scale: float,
    num_splits: int | None = None,
) -> torch.Tensor:
    """Same contract as the reference; every context length must be >= 1.

    num_splits: slices per context; None: `decode_splits` on the batch's shapes. No host sync,
    so a CUDA graph can capture it (the split count is fixed by the captured shapes).
    """
    batch, heads, head_dim = q.shape
    _, block_size, kv_heads, _ = k_cache.shape
    assert heads % kv_heads == 0 and k_cache.stride() == v_cache.stride()
    assert k_cache.stride(3) == 1 and q.stride(2) == 1
    group = heads // kv_heads
    tables = block_tables.contiguous()
    if num_splits is None:
        processors = (
            torch.cuda.get_device_properties(q.device).multi_processor_count if q.is_cuda else 1
        )
        num_splits = decode_splits(batch * kv_heads, tables.shape[1] * block_size, processors)
    out = torch.empty_like(q)
    if num_splits == 1:
        partials, lse, partial_strides, lse_strides = out, out, (0,), (0, 0)
    else:
        partials = q.new_empty((batch, heads, num_splits, head_dim), dtype=torch.float32)
        lse = q.new_empty((batch, heads, num_splits), dtype=torch.float32)
        partial_strides, lse_strides = (partials.stride(2),), (lse.stride(0), lse.stride(1))
    _grouped_decode_kernel[(batch, kv_heads, num_splits)](
        q, k_cache, v_cache, tables, context_lens, partials, lse, scale,
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        tables.stride(0), partials.stride(0), partials.stride(1), *partial_strides,
        *lse_strides, block_size, head_dim,
        GROUP=group, NUM_SPLITS=num_splits, BLOCK_G=max(MIN_DOT, triton.next_power_of_2(group)),
        TILE=TILE_TOKENS, BLOCK_D=max(MIN_DOT, triton.next_power_of_2(head_dim)),
        PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
    )  # fmt: skip
    if num_splits > 1:
        merge_attention_splits(partials, lse, out)
    return out
