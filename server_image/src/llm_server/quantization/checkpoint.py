"""Pre-quantized checkpoints: `llm-server quantize` writes them, the loader reads them.

Layout: the source directory's files, with every q/k/v/o/gate/up/down projection weight
replaced by its quantized data under the same name plus `<name>_scale`, and
llm_server_quantization.json naming the scheme (its presence is how a directory is detected).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from llm_server.quantization.quantize import QuantizedTensor, quantize
from llm_server.quantization.scheme import CONFIG_FILE, QuantScheme, read_scheme

# Checkpoint projections the model stores quantized (its PackedLinear / RowParallelLinear).
QUANTIZED_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                         "down_proj")  # fmt: skip
SCALE_SUFFIX = "_scale"


def is_quantized_projection(name: str) -> bool:
    module, _, param = name.rpartition(".")
    return param == "weight" and module.rpartition(".")[2] in QUANTIZED_PROJECTIONS


def _shape(source: Any) -> list[int]:
    return list(source.shape) if isinstance(source, torch.Tensor) else list(source.get_shape())


class QuantizedSource:
    """A pre-quantized weight read lazily, sliced in logical [out, in] coordinates as the
    layers slice a full-precision one (rows for column-parallel, columns for row-parallel)."""

    def __init__(self, data: Any, scale: Any, scheme: QuantScheme) -> None:
        self.data, self.scale, self.scheme = data, scale, scheme

    def get_shape(self) -> list[int]:
        rows, columns = _shape(self.data)
        return [rows, columns * 2 if self.scheme.method == "int4" else columns]

    def __getitem__(self, key: slice | tuple[slice, slice]) -> QuantizedTensor:
        if isinstance(key, slice):  # output rows: data and scales are row-local
            return QuantizedTensor(self.data[key], self.scale[key])
        rows, columns = key
        assert rows == slice(None) and columns.step is None
        start, stop = columns.start or 0, columns.stop
        if self.scheme.method != "int4":  # one scale per row covers every column
            return QuantizedTensor(self.data[:, start:stop], self.scale[:])
        group = self.scheme.group_size
        assert group is not None
        if start % group or stop % group:
            raise ValueError(f"int4 columns {start}:{stop} must align with groups of {group}")
        return QuantizedTensor(
            self.data[:, start // 2 : stop // 2], self.scale[:, start // group : stop // group]
        )


def quantized_sources(handle: Any, scheme: QuantScheme) -> dict[str, Any]:
    """One open safetensors file's tensors by name, projections as QuantizedSources."""
    names = set(handle.keys())
    sources: dict[str, Any] = {}
    for name in sorted(names):
        if name.endswith(SCALE_SUFFIX) and name.removesuffix(SCALE_SUFFIX) in names:
            continue
        if is_quantized_projection(name):
            if name + SCALE_SUFFIX not in names:
                raise ValueError(f"pre-quantized checkpoint lacks {name}{SCALE_SUFFIX}")
            data, scale = handle.get_slice(name), handle.get_slice(name + SCALE_SUFFIX)
            sources[name] = QuantizedSource(data, scale, scheme)
        else:
            sources[name] = handle.get_slice(name)
    return sources


def save_quantized(model_dir: Path, out_dir: Path, scheme: QuantScheme) -> dict[str, int]:
    """Quantize every projection of `model_dir` into `out_dir`; returns byte counts."""
    if not scheme.quantized:
        raise ValueError("choose a quantization to save: int8 or int4 (fp8 too, on any machine)")
    if read_scheme(model_dir) is not None:
        raise ValueError(f"{model_dir} is already quantized")
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors in {model_dir}")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} exists and is not empty")
    out_dir.mkdir(parents=True, exist_ok=True)
    for item in model_dir.iterdir():  # config, tokenizer, generation config ...
        if (
            item.is_file()
            and item.suffix != ".safetensors"
            and item.name != "model.safetensors.index.json"
        ):
            shutil.copy2(item, out_dir / item.name)
    before = after = 0
    for file in files:
        tensors: dict[str, torch.Tensor] = {}
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 - safe_open is not a dict
                tensor = handle.get_tensor(name)
                before += tensor.nbytes
                if is_quantized_projection(name):
                    try:
                        q = quantize(tensor, scheme)
                    except ValueError as exc:
                        raise ValueError(f"{name}: {exc}") from exc
                    tensors[name], tensors[name + SCALE_SUFFIX] = q.data, q.scale.contiguous()
                else:
                    tensors[name] = tensor
        after += sum(t.nbytes for t in tensors.values())
        save_file(tensors, str(out_dir / file.name), metadata={"format": "pt"})
    (out_dir / CONFIG_FILE).write_text(json.dumps(scheme.to_json(), indent=2) + "\n")
    return {"bytes_before": before, "bytes_after": after}
