"""The fused dequantize-matmul kernels against their torch references: int8 and fp8 per
output channel, int4 with every group size; GEMV (decode, up to 8 rows) and GEMM (prefill)
paths; odd sizes throughout. Tolerances: conftest.RELATIVE_TOLERANCE."""

from __future__ import annotations

import pytest
import torch
from kernel_tolerance import DEVICE, ON_GPU, assert_close, compute_dtypes

from llm_server.kernels.channel_matmul import channel_matmul, channel_matmul_reference
from llm_server.kernels.int4_matmul import int4_matmul, int4_matmul_reference
from llm_server.layers.quantized_matmul import quantized_matmul, reference_matmul
from llm_server.quantization.quantize import quantize
from llm_server.quantization.scheme import INT4_GROUP_SIZES, QuantScheme

# 1, 7, 8: GEMV (batch 1 .. its limit); 9, 33, 70: GEMM with partial row tiles.
ROWS = [1, 7, 8, 9, 33, 70] + ([256] if ON_GPU else [])


def _weights(n: int, k: int, seed: int, device: torch.device) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    # Rows of very different magnitude, so a wrong per-row scale cannot go unnoticed.
    return (torch.randn(n, k, generator=generator) * torch.logspace(-2, 1, n)[:, None]).to(device)


@pytest.mark.parametrize("dtype", compute_dtypes())
@pytest.mark.parametrize("rows", ROWS)
@pytest.mark.parametrize(("n", "k"), [(37, 96), (1, 200), (130, 67)])
def test_int8_kernel_matches_reference(rows: int, n: int, k: int, dtype: torch.dtype) -> None:
    q = quantize(_weights(n, k, rows, DEVICE), QuantScheme("int8"))
    x = torch.randn(rows, k, device=DEVICE).to(dtype)
    assert_close(channel_matmul(x, q.data, q.scale), channel_matmul_reference(x, q.data, q.scale))


@pytest.mark.skipif(
    ON_GPU and torch.cuda.get_device_capability() < (8, 9), reason="fp8 needs Ada or Hopper"
)
@pytest.mark.parametrize("rows", [1, 5, 40])
def test_fp8_weights_kernel_matches_reference(rows: int) -> None:
    """fp8 e4m3 weights through the same per-channel kernel (fp32 compute)."""
    q = quantize(_weights(45, 80, rows, DEVICE), QuantScheme("fp8"))
    x = torch.randn(rows, 80, device=DEVICE)
    assert_close(channel_matmul(x, q.data, q.scale), channel_matmul_reference(x, q.data, q.scale))


@pytest.mark.parametrize("dtype", compute_dtypes())
@pytest.mark.parametrize("rows", ROWS)
@pytest.mark.parametrize("group", INT4_GROUP_SIZES)
def test_int4_kernel_matches_reference_for_every_group_size(
    group: int, rows: int, dtype: torch.dtype
) -> None:
    n, k = 37, group * 3  # odd output count, several groups per row
    q = quantize(_weights(n, k, group + rows, DEVICE), QuantScheme("int4", group))
    x = torch.randn(rows, k, device=DEVICE).to(dtype)
    expected = int4_matmul_reference(x, q.data, q.scale, group)
    assert_close(int4_matmul(x, q.data, q.scale, group), expected)


@pytest.mark.parametrize("method", ["int8", "int4"])
def test_references_agree_with_the_layers_cpu_path(method: str) -> None:
    """The kernels' references and the CPU serving path compute the same product."""
    scheme = QuantScheme(method, 32 if method == "int4" else None)
    q = quantize(_weights(33, 96, 3, torch.device("cpu")), scheme)
    x = torch.randn(5, 96)
    kernel_reference = (
        int4_matmul_reference(x, q.data, q.scale, 32)
        if method == "int4"
        else channel_matmul_reference(x, q.data, q.scale)
    )
    assert_close(reference_matmul(x, q, scheme), kernel_reference)


@pytest.mark.skipif(not ON_GPU, reason="needs CUDA: quantized_matmul dispatches to Triton there")
@pytest.mark.parametrize("method", ["int8", "int4"])
@pytest.mark.parametrize("rows", [1, 64])
def test_cuda_dispatch_uses_the_kernels_and_matches(method: str, rows: int) -> None:
    scheme = QuantScheme(method)
    q = quantize(_weights(4096, 1024, rows, torch.device("cuda")), scheme)
    x = torch.randn(rows, 1024, device="cuda", dtype=torch.bfloat16)
    assert_close(quantized_matmul(x, q, scheme), reference_matmul(x.float(), q, scheme).bfloat16())
