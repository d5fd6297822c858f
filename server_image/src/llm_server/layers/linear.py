"""Linear layers. Q/K/V and gate/up are packed so each is one matmul (fewer, larger GEMMs).

Tensor parallelism (Megatron-style): packed projections are column-parallel (each rank holds
its slice of every projection's outputs, so q/k/v split by head), o/down are row-parallel
(each rank holds a slice of the inputs and the partial outputs are summed by all-reduce).
With one rank both are plain linears. Checkpoint tensors arrive as a `WeightSource`: a tensor
or a lazy safetensors slice, so a rank reads only its own rows or columns from disk.

Weight-only quantization (`quantize_storage`, before the weights are allocated) swaps a
layer's `weight` for its quantized data plus a `weight_scale` buffer; the layer then quantizes
each checkpoint tensor as it is copied in (a rank or a packed shard quantizes its own part
alone; see quantization/quantize.py), or copies a pre-quantized one as is. On a CPU with
native bf16 the loader then re-lays int4 weights out for torch's CPU int4 kernel
(`repack_for_cpu`): the same bytes in that kernel's order, several times faster at decode.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from llm_server.layers.cpu_gemm import dense_linear
from llm_server.layers.cpu_quantized_matmul import Int4Pack
from llm_server.layers.quantized_matmul import quantized_matmul
from llm_server.parallel_state import SINGLE, TensorParallel
from llm_server.quantization.quantize import QuantizedTensor, quantize, storage_shapes
from llm_server.quantization.scheme import QuantScheme

WeightSource = Any  # torch.Tensor, or safetensors' lazy slice (get_shape(), [a:b], [:, a:b])


def source_shape(source: WeightSource) -> list[int]:
    return list(source.shape) if isinstance(source, torch.Tensor) else list(source.get_shape())


def read_full(source: WeightSource) -> torch.Tensor:
    tensor: torch.Tensor = source[:]
    return tensor


class Linear(nn.Linear):
    """A linear layer whose weight may be stored quantized (see `quantize_storage`)."""

    weight_scale: torch.Tensor  # a buffer, present once quantize_storage ran

    def __init__(self, in_features: int, out_features: int, bias: bool = False) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.quant: QuantScheme | None = None
        self.cpu_int4: Int4Pack | None = None  # set by repack_for_cpu

    def quantize_storage(self, scheme: QuantScheme) -> None:
        """Replace the weight by quantized storage of the same logical shape (call on meta)."""
        scheme.check_in_features(self.in_features, "the layer")
        (data_shape, data_dtype), (scale_shape, scale_dtype) = storage_shapes(
            scheme, self.out_features, self.in_features
        )
        device = self.weight.device
        data = torch.empty(data_shape, dtype=data_dtype, device=device)
        self.weight = nn.Parameter(data, requires_grad=False)
        self.register_buffer("weight_scale", torch.empty(scale_shape, dtype=scale_dtype,
                                                         device=device))  # fmt: skip
        self.quant = scheme

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.quant is None:
            return dense_linear(x, self.weight, self.bias)
        out = self.matmul(x)
        return out if self.bias is None else out + self.bias

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        """x @ weight.T, without the bias."""
        if self.quant is None:
            return dense_linear(x, self.weight)
        if self.cpu_int4 is not None:
            return self.cpu_int4.matmul(x)
        return quantized_matmul(x, QuantizedTensor(self.weight, self.weight_scale), self.quant)

    def repack_for_cpu(self) -> bool:
        """Replace a loaded int4 weight by its Int4Pack (same bytes; the stored layout is then
        gone, so call it once the weights are in). False where the kernel cannot take it."""
        scheme = self.quant
        if scheme is None or scheme.method != "int4" or self.cpu_int4 is not None:
            return False
        assert scheme.group_size is not None
        if not Int4Pack.fits(self.out_features, scheme.group_size):
            return False
        pack = Int4Pack.from_stored(self.weight, self.weight_scale, scheme.group_size)
        self.weight = nn.Parameter(pack.weight, requires_grad=False)
        self.weight_scale = pack.scales_and_zeros
        self.cpu_int4 = pack
        return True

    def store_weight_rows(self, start: int, value: torch.Tensor | QuantizedTensor) -> None:
        """Copy output rows [start, start + n) in: quantized on the way if they are not yet."""
        if self.cpu_int4 is not None:
            raise RuntimeError("weights are repacked for the CPU kernel: load before repacking")
        if self.quant is None:
            if not isinstance(value, torch.Tensor):
                raise ValueError("a pre-quantized weight needs a quantized model (--quantization)")
            with torch.no_grad():
                self.weight[start : start + value.shape[0]].copy_(value)
            return
        if isinstance(value, torch.Tensor):
            if value.shape[1] != self.in_features:
                raise ValueError(f"expects {self.in_features} input columns, has {value.shape[1]}")
            value = quantize(value.to(self.weight.device), self.quant)
        rows = slice(start, start + value.data.shape[0])
        if value.data.shape[1:] != self.weight.shape[1:] or value.data.dtype != self.weight.dtype:
            raise ValueError(
                f"pre-quantized weight {tuple(value.data.shape)} {value.data.dtype} does not "
                f"match {self.quant.label} storage {tuple(self.weight.shape)} {self.weight.dtype}"
            )
        with torch.no_grad():
            self.weight[rows].copy_(value.data)
            self.weight_scale[rows].copy_(value.scale)


class PackedLinear(Linear):
    """Several projections of the same input stacked along the output dimension.

    Column-parallel when `tp.size` > 1: `shard_sizes` are the full projections' output sizes
    and this rank holds rows [rank * size / N, (rank + 1) * size / N) of each.
    """

    def __init__(
        self,
        in_features: int,
        shard_sizes: list[int],
        bias: bool = False,
        tp: TensorParallel = SINGLE,
    ) -> None:
        local = [tp.shard(size, "projection size") for size in shard_sizes]
        super().__init__(in_features, sum(local), bias=bias)
        self.tp = tp
        self.shard_sizes = local
        self.shard_offsets = [sum(local[:i]) for i in range(len(local))]

    def load_shard(self, param_name: str, shard: int, source: WeightSource) -> None:
        """Copy one checkpoint tensor (e.g. k_proj.weight): this rank's rows of it."""
        start, size = self.shard_offsets[shard], self.shard_sizes[shard]
        rows = source_shape(source)[0]
        if rows != size * self.tp.size:
            raise ValueError(
                f"shard {shard} expects {size * self.tp.size} rows, checkpoint has {rows}"
            )
        first = self.tp.rank * size
        if param_name == "weight":
            self.store_weight_rows(start, source[first : first + size])
            return
        assert self.bias is not None
        with torch.no_grad():
            self.bias[start : start + size].copy_(source[first : first + size])


class RowParallelLinear(Linear):
    """Holds in_features / N input columns; outputs are all-reduced, then the bias is added."""

    def __init__(
        self, in_features: int, out_features: int, bias: bool = False, tp: TensorParallel = SINGLE
    ) -> None:
        super().__init__(tp.shard(in_features, "input size"), out_features, bias=bias)
        self.tp = tp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tp.size == 1:
            return super().forward(x)
        out = self.tp.all_reduce(self.matmul(x))
        return out if self.bias is None else out + self.bias

    def load_full(self, param_name: str, source: WeightSource) -> None:
        """Copy a checkpoint tensor: this rank's input columns of the weight, all of the bias."""
        local = self.in_features
        if param_name == "bias":
            assert self.bias is not None
            with torch.no_grad():
                self.bias.copy_(read_full(source))
            return
        columns = source_shape(source)[1]
        if columns != local * self.tp.size:
            raise ValueError(f"expects {local * self.tp.size} input columns, has {columns}")
        first = self.tp.rank * local
        self.store_weight_rows(0, source[:, first : first + local])
