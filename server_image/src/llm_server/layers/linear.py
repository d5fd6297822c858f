"""Linear layers. Q/K/V and gate/up are packed so each is one matmul (fewer, larger GEMMs).

Tensor parallelism (Megatron-style): packed projections are column-parallel (each rank holds
its slice of every projection's outputs, so q/k/v split by head), o/down are row-parallel
(each rank holds a slice of the inputs and the partial outputs are summed by all-reduce).
With one rank both are plain linears. Checkpoint tensors arrive as a `WeightSource`: a tensor
or a lazy safetensors slice, so a rank reads only its own rows or columns from disk.

Quantized variants will subclass these and keep the same `load_shard` / `load_full` contract.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from llm_server.distributed.parallel_state import SINGLE, TensorParallel

WeightSource = Any  # torch.Tensor, or safetensors' lazy slice (get_shape(), [a:b], [:, a:b])


def source_shape(source: WeightSource) -> list[int]:
    return list(source.shape) if isinstance(source, torch.Tensor) else list(source.get_shape())


def read_full(source: WeightSource) -> torch.Tensor:
    tensor: torch.Tensor = source[:]
    return tensor


class Linear(nn.Linear):
    """A plain linear layer; the seam where quantized weights plug in later."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False) -> None:
        super().__init__(in_features, out_features, bias=bias)


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
        param = self.weight if param_name == "weight" else self.bias
        assert param is not None
        start, size = self.shard_offsets[shard], self.shard_sizes[shard]
        rows = source_shape(source)[0]
        if rows != size * self.tp.size:
            raise ValueError(
                f"shard {shard} expects {size * self.tp.size} rows, checkpoint has {rows}"
            )
        first = self.tp.rank * size
        with torch.no_grad():
            param[start : start + size].copy_(source[first : first + size])


class RowParallelLinear(Linear):
    """Holds in_features / N input columns; outputs are all-reduced, then the bias is added."""

    def __init__(
        self, in_features: int, out_features: int, bias: bool = False, tp: TensorParallel = SINGLE
    ) -> None:
        super().__init__(tp.shard(in_features, "input size"), out_features, bias=bias)
        self.tp = tp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tp.size == 1:
            return F.linear(x, self.weight, self.bias)
        out = self.tp.all_reduce(F.linear(x, self.weight))
        return out if self.bias is None else out + self.bias

    def load_full(self, param_name: str, source: WeightSource) -> None:
        """Copy a checkpoint tensor: this rank's input columns of the weight, all of the bias."""
        local = self.in_features
        if param_name == "bias":
            tensor = read_full(source)
        else:
            columns = source_shape(source)[1]
            if columns != local * self.tp.size:
                raise ValueError(f"expects {local * self.tp.size} input columns, has {columns}")
            first = self.tp.rank * local
            tensor = source[:, first : first + local]
        param = self.weight if param_name == "weight" else self.bias
        assert param is not None
        with torch.no_grad():
            param.copy_(tensor)
