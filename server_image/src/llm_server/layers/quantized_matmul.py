"""x @ W.T for a quantized W: the fused Triton kernels on CUDA, dequantize + matmul elsewhere.

The CPU path dequantizes one layer's weight per call and runs the ordinary (oneDNN) matmul, so
on CPU quantization saves memory, not time: int4 decode runs several times slower than fp32
(docs/benchmarks/quant_cpu_decode.md), and `quantization: auto` never picks it on a CPU pod.
torch's own CPU weight-only ops (`_weight_int8pack_mm`, `_weight_int4pack_mm_for_cpu`) were
measured 7-60x slower than dequantize + matmul on an AVX2 AMD EPYC, and inconclusive on the
AVX-512 one this was last measured on, so they are not used.
"""

from __future__ import annotations

import functools
import logging

import torch

from llm_server.layers.cpu_gemm import dense_linear
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
        "%s on CPU saves memory, not time: each projection is dequantized per step, so decode "
        "runs slower than fp32 (docs/benchmarks/quant_cpu_decode.md); use --quantization "
        "none or int8 for speed",
        method,
    )


def quantized_matmul(x: torch.Tensor, q: QuantizedTensor, scheme: QuantScheme) -> torch.Tensor:
    if not x.is_cuda:
        if scheme.method == "int4":
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
