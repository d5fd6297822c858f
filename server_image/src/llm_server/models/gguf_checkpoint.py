"""A GGUF file as a checkpoint: config, tokenizer and chat template through transformers' GGUF
support, weights dequantized tensor by tensor with the `gguf` package.

Every tensor is dequantized once, at load, to fp32 and then copied in exactly like a
safetensors tensor: the deployment's `--quantization` then applies as usual (docs/server.md).
Only one tensor is dequantized at a time, so the fp32 model never exists twice in memory.
Names come from gguf's own HF -> GGUF table, and llama.cpp's rotary permutation of q/k rows
is undone by transformers' tensor processor, so no naming rule is written here twice.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llm_server.gguf_file import GgufError, open_reader, summarize

log = logging.getLogger(__name__)

# Module names of our model code (Hugging Face's): the dummy side of gguf's name table.
TOP_MODULES = ("model.embed_tokens", "model.norm", "lm_head")
LAYER_MODULES = (
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "self_attn.q_norm", "self_attn.k_norm", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
    "input_layernorm", "post_attention_layernorm",
)  # fmt: skip


def _from_transformers(what: str, path: Path, load: Any) -> Any:
    """Run a transformers GGUF loader; its failures become one GgufError line."""
    try:
        return load(str(path.parent), gguf_file=path.name)
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GgufError(f"{path}: cannot read the {what} from the GGUF metadata: {reason}") from exc


def _file_identity(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


def gguf_config(path: Path) -> Any:
    """transformers' config of the file, naming the architecture our loader picks."""
    return _config(*_file_identity(path))


def gguf_tokenizer(path: Path) -> Any:
    """A fast tokenizer with the chat template and special tokens the file carries."""
    return _tokenizer(*_file_identity(path))


# Parsing the metadata costs seconds (a 49k-token vocabulary is converted): once per file
# version per process, whichever loads it again (tensor-parallel ranks in threads, tests).
@functools.lru_cache(maxsize=4)
def _config(name: str, _size: int, _mtime_ns: int) -> Any:
    from transformers import AutoConfig

    path = Path(name)
    summary = summarize(path)
    config = _from_transformers("model config", path, AutoConfig.from_pretrained)
    config.architectures = [summary.hf_architecture]
    log.info(
        "GGUF %s: %s, %.0fM parameters in %s; dequantized to fp32 as it loads",
        path.name, summary.architecture, summary.parameters / 1e6, "/".join(summary.tensor_types),
    )  # fmt: skip
    return config


@functools.lru_cache(maxsize=4)
def _tokenizer(name: str, _size: int, _mtime_ns: int) -> Any:
    from transformers import AutoTokenizer

    return _from_transformers("tokenizer", Path(name), AutoTokenizer.from_pretrained)


def hf_names_by_gguf_name(architecture: str, num_layers: int) -> dict[str, str]:
    """GGUF tensor base names (blk.3.attn_q) -> ours (model.layers.3.self_attn.q_proj)."""
    import gguf

    arch = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == architecture)
    table = gguf.get_tensor_name_map(arch, num_layers)
    ours = [*TOP_MODULES]
    ours += [f"model.layers.{i}.{m}" for i in range(num_layers) for m in LAYER_MODULES]
    named = {hf: table.get_name(hf) for hf in ours}
    return {gguf_name: hf for hf, gguf_name in named.items() if gguf_name is not None}


def gguf_weights(path: Path, hf_config: Any) -> Iterator[tuple[str, torch.Tensor]]:
    """(our tensor name, fp32 tensor), dequantized one at a time as the model copies them."""
    from gguf import dequantize
    from transformers.modeling_gguf_pytorch_utils import TENSOR_PROCESSORS, TensorProcessor

    reader = open_reader(path)
    architecture = str(reader.get_field("general.architecture").contents())  # as written
    names = hf_names_by_gguf_name(architecture, int(hf_config.num_hidden_layers))
    heads = {
        "num_attention_heads": hf_config.num_attention_heads,
        "num_key_value_heads": hf_config.num_key_value_heads,
    }
    processor_class: Any = TENSOR_PROCESSORS.get(architecture, TensorProcessor)
    processor = processor_class(config=heads)  # undoes llama.cpp's q/k row permutation
    for tensor in reader.tensors:
        base, _, kind = tensor.name.rpartition(".")  # kind: weight or bias
        if base not in names:
            # e.g. rope_freqs: the rotary tables are derived from the config instead.
            log.warning("%s: GGUF tensor %s has no place in the model; skipped", path, tensor.name)
            continue
        try:
            values = dequantize(tensor.data, tensor.tensor_type)
        except Exception as exc:
            raise GgufError(f"{path}: cannot dequantize {tensor.name}: {exc}") from exc
        values = processor.process(weights=values, name=tensor.name).weights
        # A copy: F32 tensors come straight from the read-only memory map.
        yield f"{names[base]}.{kind}", torch.from_numpy(np.array(values, np.float32))
