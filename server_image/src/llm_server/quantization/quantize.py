"""Quantize and dequantize weight matrices [out_features, in_features].

Every scheme is row-local (a row's values and scales depend on that row only), so a packed
projection or a column-parallel rank, which hold whole rows, quantize them alone and get
exactly what quantizing the whole matrix gives. A row-parallel rank holds a slice of each
row's columns: int4 slices at group boundaries are again exact; int8/fp8 get per-slice row
scales (each rank's own absmax, never coarser than the whole row's).

- int8: one fp32 scale per output row, absmax / 127, values in [-127, 127].
- fp8:  one fp32 scale per output row, absmax / 448 (e4m3's largest finite value).
- int4: asymmetric, per group of `group_size` input columns: w = nibble * step + offset with
  nibble in [0, 15], step = (max - min) / 15 and offset = min, both fp16, stored as one
  `scale` tensor [out, groups, 2] (step, offset). Column 2j sits in the low nibble of byte j,
  2j + 1 in the high. This is GGUF's Q4_1 block (d, m) at group 32, so weights dequantized
  from Q4_1 come back exactly (Q4_0 blocks only where they use both extreme levels). The zero
  point is why it beats symmetric absmax / 7 scales: a group's values are rarely centred on
  0, and a symmetric grid wastes the levels on the side the group does not reach (measured
  in docs/quantization.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llm_server.quantization.scheme import QuantScheme

INT8_MAX = 127
INT4_LEVELS = 15  # nibble values 0..15
FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = 448.0
_TINY = 1e-12  # all-zero rows get this scale instead of 0 (no division by zero)


@dataclass(frozen=True)
class QuantizedTensor:
    """A quantized weight matrix as stored: `data` (int8, fp8 or packed uint8) and `scale`
    (int8/fp8: fp32 per row; int4: fp16 (step, offset) pairs per group)."""

    data: torch.Tensor
    scale: torch.Tensor


def storage_shapes(scheme: QuantScheme, out_features: int, in_features: int) -> tuple[
    tuple[tuple[int, ...], torch.dtype], tuple[tuple[int, ...], torch.dtype]
]:  # fmt: skip
    """((data shape, dtype), (scale shape, dtype)) of a quantized [out, in] matrix."""
    if scheme.method == "int8":
        return ((out_features, in_features), torch.int8), ((out_features,), torch.float32)
    if scheme.method == "fp8":
        return ((out_features, in_features), FP8_DTYPE), ((out_features,), torch.float32)
    if scheme.method == "int4":
        assert scheme.group_size is not None
        groups = in_features // scheme.group_size
        return ((out_features, in_features // 2), torch.uint8), ((out_features, groups, 2),
                                                                  torch.float16)  # fmt: skip
    raise ValueError(f"{scheme.method} is not a quantized scheme")


def quantize(weight: torch.Tensor, scheme: QuantScheme) -> QuantizedTensor:
    w = weight.float()
    if scheme.method == "int8":
        scale = (w.abs().amax(dim=1) / INT8_MAX).clamp(min=_TINY)
        data = torch.round(w / scale[:, None]).clamp(-INT8_MAX, INT8_MAX).to(torch.int8)
        return QuantizedTensor(data, scale)
    if scheme.method == "fp8":
        scale = (w.abs().amax(dim=1) / FP8_MAX).clamp(min=_TINY)
        data = (w / scale[:, None]).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
        return QuantizedTensor(data, scale)
    if scheme.method == "int4":
        return _quantize_int4(w, scheme)
    raise ValueError(f"{scheme.method} is not a quantized scheme")


def _quantize_int4(w: torch.Tensor, scheme: QuantScheme) -> QuantizedTensor:
    group = scheme.group_size
    assert group is not None
    rows, columns = w.shape
    scheme.check_in_features(columns, "this weight")
    grouped = w.view(rows, columns // group, group)
    low, high = grouped.amin(dim=2), grouped.amax(dim=2)
    # Round step and offset to their stored fp16 first, so values are quantized against what
    # is kept (and a Q4_1 block, whose d and m are fp16, comes back bit for bit).
    step = ((high - low) / INT4_LEVELS).clamp(min=2**-24).half()
    offset = low.half()
    nibbles = torch.round((grouped - offset.float()[:, :, None]) / step.float()[:, :, None])
    nibbles = nibbles.clamp(0, INT4_LEVELS).to(torch.uint8).view(rows, columns)
    return QuantizedTensor(pack_int4(nibbles), torch.stack((step, offset), dim=2))


def pack_int4(nibbles: torch.Tensor) -> torch.Tensor:
    """uint8 values in [0, 15], [rows, columns] -> uint8 [rows, columns / 2], two per byte."""
    unsigned = nibbles.to(torch.uint8)
    packed: torch.Tensor = unsigned[:, 0::2] | (unsigned[:, 1::2] << 4)
    return packed


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """uint8 [rows, columns / 2] -> uint8 values in [0, 15], [rows, columns]."""
    return torch.stack((packed & 0x0F, packed >> 4), dim=-1).view(packed.shape[0], -1)


def dequantize_int4(packed: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """nibble * step + offset per group, in `dtype` (the group size follows from the shapes).

    The CPU decode path runs this for every layer at every step, so it is written for speed:
    nibbles go straight into strided float views and the scaling is in place (measured 20x
    faster than torch.stack + a broadcast addcmul on one CPU thread, 1536x576 at group 32)."""
    rows, half = packed.shape
    values = torch.empty(rows, half, 2, dtype=torch.float32, device=packed.device)
    values[:, :, 0] = packed & 0x0F
    values[:, :, 1] = packed >> 4
    scale = scale.float()
    grouped = values.view(rows, scale.shape[1], -1)
    grouped.mul_(scale[:, :, :1]).add_(scale[:, :, 1:])
    return values.view(rows, 2 * half).to(dtype)


def dequantize(q: QuantizedTensor, scheme: QuantScheme, dtype: torch.dtype) -> torch.Tensor:
    """The weight matrix the quantized form stands for, in `dtype`."""
    if scheme.method in ("int8", "fp8"):
        return (q.data.to(torch.float32) * q.scale.float()[:, None]).to(dtype)
    if scheme.method == "int4":
        return dequantize_int4(q.data, q.scale, dtype)
    raise ValueError(f"{scheme.method} is not a quantized scheme")
