# mypy: disable-error-code="untyped-decorator,no-untyped-def"
# (triton.jit kernels take untyped pointer and constexpr arguments)
"""y = x @ W.T for a group-wise asymmetric int4 W: packed two per byte, per group an fp16
step and offset (w = nibble * step + offset).

Layout (see quantization/quantize.py): byte j of a row holds column 2j in its low nibble and
column 2j + 1 in its high nibble; scales are [N, K/G, 2] (step, offset). Each loop iteration
covers exactly one group of G input columns (G/2 packed bytes), so its step and offset are one
value per output row: the even and odd columns are multiplied with the even and odd inputs
separately (no interleaving in registers), and the group adds
step * (nibbles . x) + offset * sum(x), so the offset costs one sum of the inputs per group.
Two kernels: a GEMV for decode and a tiled GEMM (two tl.dot per group) for prefill.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from llm_server.quantization.quantize import dequantize_int4

GEMV_MAX_ROWS = 8


def int4_matmul_reference(
    x: torch.Tensor, packed: torch.Tensor, scale: torch.Tensor, group_size: int
) -> torch.Tensor:
    """The torch reference: unpack, dequantize, then matmul (in float32)."""
    assert scale.shape[1] * group_size == packed.shape[1] * 2
    return (x.float() @ dequantize_int4(packed, scale, torch.float32).T).to(x.dtype)


@triton.jit
def _gemv_kernel(x_ptr, w_ptr, s_ptr, y_ptr, N, K, stride_xm, stride_wn, stride_sn, stride_ym,
                 G: tl.constexpr, BLOCK_N: tl.constexpr):  # fmt: skip
    pid_n = tl.program_id(0)
    row = tl.program_id(1)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    offs_p = tl.arange(0, G // 2)  # packed bytes of one group
    acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for group in range(0, K // G):
        byte = group * (G // 2) + offs_p
        packed = tl.load(w_ptr + offs_n[:, None] * stride_wn + byte[None, :],
                         mask=mask_n[:, None], other=0).to(tl.int32)  # fmt: skip
        low = (packed & 0xF).to(tl.float32)
        high = (packed >> 4).to(tl.float32)
        x_even = tl.load(x_ptr + row * stride_xm + 2 * byte).to(tl.float32)
        x_odd = tl.load(x_ptr + row * stride_xm + 2 * byte + 1).to(tl.float32)
        part = tl.sum(low * x_even[None, :] + high * x_odd[None, :], axis=1)
        x_sum = tl.sum(x_even + x_odd, axis=0)
        step = tl.load(s_ptr + offs_n * stride_sn + 2 * group, mask=mask_n, other=0.0)
        offset = tl.load(s_ptr + offs_n * stride_sn + 2 * group + 1, mask=mask_n, other=0.0)
        acc += part * step.to(tl.float32) + x_sum * offset.to(tl.float32)
    tl.store(y_ptr + row * stride_ym + offs_n, acc.to(y_ptr.dtype.element_ty), mask=mask_n)


@triton.jit
def _gemm_kernel(x_ptr, w_ptr, s_ptr, y_ptr, M, N, K, stride_xm, stride_wn, stride_sn, stride_ym,
                 G: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                 PRECISION: tl.constexpr):  # fmt: skip
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_m, mask_n = offs_m < M, offs_n < N
    offs_p = tl.arange(0, G // 2)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for group in range(0, K // G):
        byte = group * (G // 2) + offs_p
        x_rows = x_ptr + offs_m[:, None] * stride_xm + 2 * byte[None, :]
        x_even = tl.load(x_rows, mask=mask_m[:, None], other=0.0)
        x_odd = tl.load(x_rows + 1, mask=mask_m[:, None], other=0.0)
        # [G/2, BLOCK_N] tile of the packed W.T
        packed = tl.load(w_ptr + offs_n[None, :] * stride_wn + byte[:, None],
                         mask=mask_n[None, :], other=0).to(tl.int32)  # fmt: skip
        low = (packed & 0xF).to(x_even.dtype)  # 0..15: exact in every float dtype
        high = (packed >> 4).to(x_even.dtype)
        part = tl.dot(x_even, low, input_precision=PRECISION)
        part = tl.dot(x_odd, high, acc=part, input_precision=PRECISION)
        x_sum = tl.sum(x_even.to(tl.float32) + x_odd.to(tl.float32), axis=1)
        step = tl.load(s_ptr + offs_n * stride_sn + 2 * group, mask=mask_n, other=0.0)
        offset = tl.load(s_ptr + offs_n * stride_sn + 2 * group + 1, mask=mask_n, other=0.0)
        acc += part * step.to(tl.float32)[None, :]
        acc += x_sum[:, None] * offset.to(tl.float32)[None, :]
    tl.store(y_ptr + offs_m[:, None] * stride_ym + offs_n[None, :],
             acc.to(y_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])  # fmt: skip


def int4_matmul(
    x: torch.Tensor, packed: torch.Tensor, scale: torch.Tensor, group_size: int
) -> torch.Tensor:
    """x [M, K] @ dequantized packed [N, K/2] with fp16 (step, offset) [N, K/G, 2] -> [M, N]."""
    M, K = x.shape
    N = packed.shape[0]
    assert packed.shape[1] * 2 == K and K % group_size == 0 and packed.stride(1) == 1
    assert scale.shape == (N, K // group_size, 2) and scale.stride()[1:] == (2, 1)
    x = x.contiguous()
    y = torch.empty((M, N), dtype=x.dtype, device=x.device)
    if M <= GEMV_MAX_ROWS:
        block_n = 32
        grid = (triton.cdiv(N, block_n), M)
        _gemv_kernel[grid](x, packed, scale, y, N, K, x.stride(0), packed.stride(0),
                           scale.stride(0), y.stride(0), G=group_size, BLOCK_N=block_n)  # fmt: skip
        return y
    block_m = 16 if M <= 16 else (32 if M <= 32 else 64)
    block_n = 64
    grid = (triton.cdiv(M, block_m), triton.cdiv(N, block_n))
    _gemm_kernel[grid](x, packed, scale, y, M, N, K, x.stride(0), packed.stride(0),
                       scale.stride(0), y.stride(0), G=group_size, BLOCK_M=block_m,
                       BLOCK_N=block_n,
                       PRECISION="ieee" if x.dtype == torch.float32 else "tf32")  # fmt: skip
    return y
