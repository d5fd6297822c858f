"""x @ W.T for a quantized W: the fused Triton kernels on CUDA; on CPUs with native bf16,
torch's packed CPU kernels (cpu_quantized_matmul.py; int4 is repacked at load and called by
its Linear); elsewhere dequantize + matmul.

The dequantize + matmul path reads the weight and writes and reads a full-precision copy of
it per call, so there quantization saves memory, not time: int4 decode runs several times
slower than fp32 (docs/benchmarks/quant_cpu_decode.md). torch's packed CPU kernels are fast
only with bf16 activations; with fp32 ones, or on CPUs that emulate bf16 (AVX2), they were
measured 7-60x slower than dequantize + matmul, so those CPUs keep this path.
"""

from __future__ import annotations

import functools
import logging

import torch

from llm_server.layers.cpu_gemm import dense_linear
from llm_server.layers.cpu_quantized_matmul import int8_matmul_bf16, packed_kernels_on
from llm_server.quantization.quantize import QuantizedTensor, dequantize
from llm_server.quantization.scheme import QuantScheme


def reference_matmul(x: torch.Tensor, q: QuantizedTensor, scheme: QuantScheme) -> torch.Tensor:
    """The torch reference every kernel is tested against (runs on any device)."""
    if scheme.method == "int8":  # per-row scale commutes with the matmul: scale the output
        return dense_linear(x, q.data.to(x.dtype)) * q.scale.to(x.dtype)
    return dense_linear(x, dequantize(q, scheme, x.dtype))


@functools.cache
def _warn_slow_on_cpu(method: str) -> None:
    """Once per process, at the warm-up forward: where the user reads the startup log."""
    logging.getLogger(__name__).warning(
        "%s on this CPU saves memory, not time: without native bf16 (AVX512-BF16 or AMX) for "
        "the packed int4 kernel, each projection is dequantized per step, so decode runs "
        "slower than fp32 (docs/benchmarks/quant_cpu_decode.md); use --quantization none or "
        "int8 for speed",
        method,
    )


def quantized_matmul(x: torch.Tensor, q: QuantizedTensor, scheme: QuantScheme) -> torch.Tensor:
    if not x.is_cuda:
        if scheme.method == "int8" and packed_kernels_on(x.device):
            return int8_matmul_bf16(x, q.data, q.scale)
        if scheme.method == "int4":  # not repacked: no native bf16, or a shape it cannot take
            _warn_slow_on_cpu(scheme.label)
        return reference_matmul(x, q, scheme)
    from llm_server.kernels.channel_matmul import channel_matmul
    from llm_server.kernels.int4_matmul import int4_matmul

    flat = x.reshape(-1, x.shape[-1])
    if scheme.method == "int4":
        assert scheme.group_size is not None
        out = int4_matmul(flat, q.data, q.scale, scheme.group_size)
    else:
        out = channel_matmul(flat, q.data, q.scale)
    return out.view(*x.shape[:-1], out.shape[-1])
