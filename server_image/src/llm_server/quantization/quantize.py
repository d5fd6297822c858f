"""Quantize and dequantize weight matrices [out_features, in_features]; symmetric, no zero point.

Every scheme is row-local (a row's values and scales depend on that row only), so a packed
projection or a column-parallel rank, which hold whole rows, quantize them alone and get
exactly what quantizing the whole matrix gives. A row-parallel rank holds a slice of each
row's columns: int4 slices at group boundaries are again exact; int8/fp8 get per-slice row
scales (each rank's own absmax, never coarser than the whole row's).

- int8: one fp32 scale per output row, absmax / 127, values in [-127, 127].
- fp8:  one fp32 scale per output row, absmax / 448 (e4m3's largest finite value).
- int4: one fp16 scale per group of `group_size` input columns, absmax / 7, values in [-8, 7]
  stored as value + 8 in a nibble: column 2j in the low nibble of byte j, 2j + 1 in the high.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llm_server.quantization.scheme import QuantScheme

INT8_MAX = 127
INT4_MAX = 7
FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = 448.0
_TINY = 1e-12  # all-zero rows get this scale instead of 0 (no division by zero)


@dataclass(frozen=True)
class QuantizedTensor:
    """A quantized weight matrix as stored: `data` (int8, fp8 or packed uint8) and `scale`."""

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
        return ((out_features, in_features // 2), torch.uint8), ((out_features, groups),
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
    # Round the scale to its stored fp16 first, so values are quantized against what is kept.
    scale = (grouped.abs().amax(dim=2) / INT4_MAX).clamp(min=2**-24).half()
    values = torch.round(grouped / scale.float()[:, :, None]).clamp(-INT4_MAX - 1, INT4_MAX)
    return QuantizedTensor(pack_int4(values.view(rows, columns).to(torch.int8)), scale)


def pack_int4(values: torch.Tensor) -> torch.Tensor:
    """int8 values in [-8, 7], [rows, columns] -> uint8 [rows, columns / 2], two per byte."""
    unsigned = (values + 8).to(torch.uint8)
    packed: torch.Tensor = unsigned[:, 0::2] | (unsigned[:, 1::2] << 4)
    return packed


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """uint8 [rows, columns / 2] -> int8 values in [-8, 7], [rows, columns]."""
    low = (packed & 0x0F).to(torch.int8) - 8
    high = (packed >> 4).to(torch.int8) - 8
    return torch.stack((low, high), dim=-1).view(packed.shape[0], -1)


def dequantize(q: QuantizedTensor, scheme: QuantScheme, dtype: torch.dtype) -> torch.Tensor:
    """The weight matrix the quantized form stands for, in `dtype`."""
    if scheme.method in ("int8", "fp8"):
        return (q.data.to(torch.float32) * q.scale.float()[:, None]).to(dtype)
    if scheme.method == "int4":
        assert scheme.group_size is not None
        values = unpack_int4(q.data).float()
        rows, columns = values.shape
        grouped = values.view(rows, columns // scheme.group_size, scheme.group_size)
        return (grouped * q.scale.float()[:, :, None]).view(rows, columns).to(dtype)
    raise ValueError(f"{scheme.method} is not a quantized scheme")
