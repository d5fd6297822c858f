# mypy: disable-error-code="untyped-decorator,no-untyped-def"
# (triton.jit kernels take untyped pointer and constexpr arguments)
"""Merge split-K attention partials into one output per (sequence, query head).

Each split attended over its own slice of the context and left its softmax-normalized output
and the log of its softmax denominator (log-sum-exp of its scores). The whole context's
output is the partials weighted by softmax(lse) over the splits; a split whose slice was
empty carries lse = -inf and weighs nothing.

The torch reference is `merge_attention_splits_reference` below.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


def merge_attention_splits_reference(partials: torch.Tensor, lse: torch.Tensor) -> torch.Tensor:
    """partials [B, H, S, D] float32, lse [B, H, S] -> [B, H, D] float32."""
    weights = torch.softmax(lse, dim=-1)  # -inf splits get 0; at least one split is finite
    return (partials * weights[..., None]).sum(dim=-2)


@triton.jit
def _merge_kernel(part_ptr, lse_ptr, out_ptr, stride_pb, stride_ph, stride_ps,
                  stride_lb, stride_lh, stride_ob, stride_oh, NUM_SPLITS, HEAD_DIM,
                  BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr):  # fmt: skip
    seq = tl.program_id(0)
    head = tl.program_id(1)
    offs_s = tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, BLOCK_D)
    mask_s = offs_s < NUM_SPLITS
    mask_d = offs_d < HEAD_DIM
    lse = tl.load(lse_ptr + seq * stride_lb + head * stride_lh + offs_s, mask=mask_s,
                  other=float("-inf"))  # fmt: skip
    weights = tl.exp(lse - tl.max(lse, axis=0))
    offsets = seq * stride_pb + head * stride_ph + offs_s[:, None] * stride_ps + offs_d[None, :]
    parts = tl.load(part_ptr + offsets, mask=mask_s[:, None] & mask_d[None, :], other=0.0)
    out = tl.sum(parts * weights[:, None], axis=0) / tl.sum(weights, axis=0)
    tl.store(out_ptr + seq * stride_ob + head * stride_oh + offs_d,
             out.to(out_ptr.dtype.element_ty), mask=mask_d)  # fmt: skip


def merge_attention_splits(partials: torch.Tensor, lse: torch.Tensor, out: torch.Tensor) -> None:
    """Write the merge of partials [B, H, S, D] and lse [B, H, S] into out [B, H, D]."""
    batch, heads, splits, head_dim = partials.shape
    assert partials.stride(3) == 1 and lse.stride(2) == 1 and out.stride(2) == 1
    _merge_kernel[(batch, heads)](
        partials, lse, out, partials.stride(0), partials.stride(1), partials.stride(2),
        lse.stride(0), lse.stride(1), out.stride(0), out.stride(1), splits, head_dim,
        BLOCK_S=triton.next_power_of_2(splits), BLOCK_D=triton.next_power_of_2(head_dim),
    )  # fmt: skip
