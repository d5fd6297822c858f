"""int8 and int4 weight-only matmuls on CPUs with native bf16 arithmetic (AVX512-BF16 or AMX).

Batch-1 decode on CPU is bound by the bytes of weights streamed per token, so quantized
weights pay only if the matmul reads them packed. torch's CPU build has such kernels,
`_weight_int8pack_mm` and `_weight_int4pack_mm_for_cpu`, but only fast with bf16 activations
(their fp32 paths are scalar loops, tens of times slower). So on these CPUs:

- int8, up to INT8PACK_MAX_ROWS rows (decode steps of a few sequences): `_weight_int8pack_mm`
  on the stored int8 weight; more rows (prefill, large batches): the weight cast to bf16 and
  oneDNN's bf16 GEMM, whose cost the rows amortize.
- int4: `_weight_int4pack_mm_for_cpu` for every row count, on the weight re-laid out once at
  load time into that kernel's own order (`Int4Pack`; it replaces the stored layout).

Both compute in bf16 and return the input's dtype (max error ~1 % of the output's magnitude,
bf16 rounding; the fp32 references in quantized_matmul.py are exact to summation order).
Without native bf16 those ops are emulated and slower than fp32, so such CPUs keep the
references. Measured in docs/benchmarks/quant_cpu_decode.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from llm_server.quantization.quantize import unpack_int4

# Read once: the CPU does not change under a running process.
NATIVE_BF16: bool = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
# The crossover measured on an AMD EPYC (Zen 4): 8 rows still favour the int8 kernel, 16 not.
INT8PACK_MAX_ROWS = 8
# `_weight_int4pack_mm_for_cpu` takes whole blocks of 16 output rows and these group sizes.
INT4PACK_ROW_MULTIPLE = 16
INT4PACK_GROUP_SIZES = (32, 64, 128, 256)
# The kernel's zero point: it computes w = (nibble - 8) * scale + zero.
INT4PACK_MIDPOINT = 8


def packed_kernels_on(device: torch.device) -> bool:
    """Whether quantized layers on `device` use the packed bf16 kernels of this module."""
    return device.type == "cpu" and NATIVE_BF16


def int8_matmul_bf16(x: torch.Tensor, data: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x @ (data * scale[:, None]).T for int8 `data` [out, in] and row `scale` [out]."""
    flat = x.reshape(-1, x.shape[-1]).to(torch.bfloat16)
    row_scale = scale.to(torch.bfloat16)
    if flat.shape[0] <= INT8PACK_MAX_ROWS:
        out = torch.ops.aten._weight_int8pack_mm(flat, data, row_scale)
    else:
        out = F.linear(flat, data.to(torch.bfloat16)) * row_scale
    result: torch.Tensor = out.to(x.dtype).view(*x.shape[:-1], data.shape[0])
    return result


@dataclass(frozen=True)
class Int4Pack:
    """An int4 weight in `_weight_int4pack_mm_for_cpu`'s layout: `weight` (uint8, the
    kernel's own nibble order) and `scales_and_zeros` [groups, out, 2] bf16."""

    weight: torch.Tensor
    scales_and_zeros: torch.Tensor
    group_size: int

    @staticmethod
    def fits(out_features: int, group_size: int) -> bool:
        return out_features % INT4PACK_ROW_MULTIPLE == 0 and group_size in INT4PACK_GROUP_SIZES

    @classmethod
    def from_stored(cls, packed: torch.Tensor, scale: torch.Tensor, group_size: int) -> Int4Pack:
        """From our storage: `packed` [out, in / 2] (column 2j in the low nibble of byte j) and
        `scale` [out, groups, 2] fp16 (step, offset): w = nibble * step + offset."""
        nibbles = unpack_int4(packed).to(torch.int32)
        weight = torch.ops.aten._convert_weight_to_int4pack_for_cpu(nibbles, 1)
        step, offset = scale[..., 0].float(), scale[..., 1].float()
        # nibble * step + offset == (nibble - 8) * step + (offset + 8 * step)
        zero = offset + INT4PACK_MIDPOINT * step
        scales_and_zeros = torch.stack((step, zero), dim=-1).transpose(0, 1).contiguous()
        return cls(weight, scales_and_zeros.to(torch.bfloat16), group_size)

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        """x @ W.T, computed in bf16, returned in x's dtype."""
        flat = x.reshape(-1, x.shape[-1]).to(torch.bfloat16)
        out = torch.ops.aten._weight_int4pack_mm_for_cpu(
            flat, self.weight, self.group_size, self.scales_and_zeros
        )
        result: torch.Tensor = out.to(x.dtype).view(*x.shape[:-1], out.shape[-1])
        return result
