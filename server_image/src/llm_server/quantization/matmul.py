"""x @ W.T for a quantized W: the fused Triton kernels on CUDA, dequantize + matmul elsewhere.

The CPU path dequantizes one layer's weight per call and runs the ordinary matmul. torch's
own CPU weight-only ops (`_weight_int8pack_mm`, `_weight_int4pack_mm_for_cpu`) were measured
7-60x slower than that on this project's CI machine (an AVX2 AMD EPYC), so they are not used:
on CPU, quantization saves memory, not time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from llm_server.quantization.quantize import QuantizedTensor, dequantize
from llm_server.quantization.scheme import QuantScheme


def reference_matmul(x: torch.Tensor, q: QuantizedTensor, scheme: QuantScheme) -> torch.Tensor:
    """The torch reference every kernel is tested against (runs on any device)."""
    if scheme.method == "int8":  # per-row scale commutes with the matmul: scale the output
        return F.linear(x, q.data.to(x.dtype)) * q.scale.to(x.dtype)
    return F.linear(x, dequantize(q, scheme, x.dtype))


def quantized_matmul(x: torch.Tensor, q: QuantizedTensor, scheme: QuantScheme) -> torch.Tensor:
    if not x.is_cuda:
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
