# mypy: disable-error-code="untyped-decorator,no-untyped-def"
# (triton.jit kernels take untyped pointer and constexpr arguments)
"""y = x @ (W * scale[:, None]).T for a per-output-channel quantized W (int8 or fp8 e4m3).

Dequantization is fused: weight tiles are loaded in their 1-byte form, converted in registers,
and the per-row scale is applied once to the accumulated output (it commutes with the sum
over the inputs). Two kernels: a GEMV for decode (a few rows of x; each program reduces a
[BLOCK_N, BLOCK_K] weight tile with plain multiply-adds, so the weight bytes stream through
once) and a tiled GEMM with tl.dot for prefill.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

GEMV_MAX_ROWS = 8  # up to this many rows of x, the GEMV kernel runs once per row


def channel_matmul_reference(
    x: torch.Tensor, data: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """The torch reference: dequantize, then matmul (in float32)."""
    weight = data.float() * scale.float()[:, None]
    return (x.float() @ weight.T).to(x.dtype)


@triton.jit
def _gemv_kernel(x_ptr, w_ptr, s_ptr, y_ptr, N, K, stride_xm, stride_wn, stride_ym,
                 BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):  # fmt: skip
    pid_n = tl.program_id(0)
    row = tl.program_id(1)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        mask_k = offs_k < K
        x = tl.load(x_ptr + row * stride_xm + offs_k, mask=mask_k, other=0.0).to(tl.float32)
        w = tl.load(w_ptr + offs_n[:, None] * stride_wn + offs_k[None, :],
                    mask=mask_n[:, None] & mask_k[None, :], other=0.0)  # fmt: skip
        acc += tl.sum(w.to(tl.float32) * x[None, :], axis=1)
    scale = tl.load(s_ptr + offs_n, mask=mask_n, other=0.0)
    tl.store(y_ptr + row * stride_ym + offs_n, (acc * scale).to(y_ptr.dtype.element_ty),
             mask=mask_n)  # fmt: skip


@triton.jit
def _gemm_kernel(x_ptr, w_ptr, s_ptr, y_ptr, M, N, K, stride_xm, stride_wn, stride_ym,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                 PRECISION: tl.constexpr):  # fmt: skip
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_m, mask_n = offs_m < M, offs_n < N
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        mask_k = offs_k < K
        x = tl.load(x_ptr + offs_m[:, None] * stride_xm + offs_k[None, :],
                    mask=mask_m[:, None] & mask_k[None, :], other=0.0)  # fmt: skip
        # [BLOCK_K, BLOCK_N] tile of W.T, read straight from W's rows
        w = tl.load(w_ptr + offs_n[None, :] * stride_wn + offs_k[:, None],
                    mask=mask_n[None, :] & mask_k[:, None], other=0.0)  # fmt: skip
        acc += tl.dot(x, w.to(x.dtype), input_precision=PRECISION)
    scale = tl.load(s_ptr + offs_n, mask=mask_n, other=0.0)
    acc = acc * scale[None, :]
    tl.store(y_ptr + offs_m[:, None] * stride_ym + offs_n[None, :],
             acc.to(y_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])  # fmt: skip


def channel_matmul(x: torch.Tensor, data: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x [M, K] (fp32/bf16/fp16) @ dequantized data [N, K] (int8/fp8) with scale [N] -> [M, N]."""
    M, K = x.shape
    N = data.shape[0]
    assert data.shape[1] == K and data.stride(1) == 1 and scale.shape == (N,)
    x = x.contiguous()
    y = torch.empty((M, N), dtype=x.dtype, device=x.device)
    if M <= GEMV_MAX_ROWS:
        block_n, block_k = 32, 128
        grid = (triton.cdiv(N, block_n), M)
        _gemv_kernel[grid](x, data, scale, y, N, K, x.stride(0), data.stride(0), y.stride(0),
                           BLOCK_N=block_n, BLOCK_K=block_k)  # fmt: skip
        return y
    block_m = 16 if M <= 16 else (32 if M <= 32 else 64)
    block_n, block_k = 64, 64
    grid = (triton.cdiv(M, block_m), triton.cdiv(N, block_n))
    _gemm_kernel[grid](x, data, scale, y, M, N, K, x.stride(0), data.stride(0), y.stride(0),
                       BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k,
                       PRECISION="ieee" if x.dtype == torch.float32 else "tf32")  # fmt: skip
    return y
