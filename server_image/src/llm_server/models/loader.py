"""Load a Hugging Face-format model directory into our model code.

config.json goes through transformers' AutoConfig, the tokenizer through AutoTokenizer, and
the safetensors weights are streamed tensor by tensor into a model built on the meta device.
Tensors are read lazily (safetensors slices), so a tensor-parallel rank reads only its shard.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from llm_server.distributed.parallel_state import SINGLE, TensorParallel
from llm_server.distributed.sizes import model_shapes, tensor_parallel_error
from llm_server.layers.linear import WeightSource
from llm_server.models.llama import LlamaForCausalLM, MistralForCausalLM
from llm_server.models.qwen import Qwen2ForCausalLM, Qwen3ForCausalLM

log = logging.getLogger(__name__)

MODEL_CLASSES: dict[str, type[LlamaForCausalLM]] = {
    "LlamaForCausalLM": LlamaForCausalLM,
    "MistralForCausalLM": MistralForCausalLM,
    "Qwen2ForCausalLM": Qwen2ForCausalLM,
    "Qwen3ForCausalLM": Qwen3ForCausalLM,
}

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class LoadedModel:
    model: LlamaForCausalLM
    tokenizer: Any  # a transformers PreTrainedTokenizerFast
    hf_config: Any
    eos_token_ids: tuple[int, ...]
    max_model_len: int  # what the architecture supports (context window, sliding window)
    device: torch.device
    dtype: torch.dtype


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def load_model(
    model_dir: str | Path, dtype: str = "fp32", device: str = "auto", tp: TensorParallel = SINGLE
) -> LoadedModel:
    from transformers import AutoConfig, AutoTokenizer

    path = Path(model_dir)
    hf_config = AutoConfig.from_pretrained(path)
    architectures = getattr(hf_config, "architectures", None) or []
    model_cls = next((MODEL_CLASSES[a] for a in architectures if a in MODEL_CLASSES), None)
    if model_cls is None:
        raise ValueError(f"unsupported architecture {architectures}; have {sorted(MODEL_CLASSES)}")
    error = tensor_parallel_error(tp.size, model_shapes(hf_config.to_dict()))
    if error is not None:
        raise ValueError(error)
    torch_device, torch_dtype = resolve_device(device), resolve_dtype(dtype)
    max_model_len = _architecture_max_len(hf_config)
    with torch.device("meta"):
        model = model_cls.from_hf_config(hf_config, tp)
    model = model.to_empty(device=torch_device).to(torch_dtype)
    if model.spec.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight  # to_empty unties them
    model.load_weights(_iter_safetensors(path))
    model.rotary.build(torch_device, torch_dtype)
    model.eval().requires_grad_(False)
    tokenizer = AutoTokenizer.from_pretrained(path)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        hf_config=hf_config,
        eos_token_ids=_eos_token_ids(path, hf_config, tokenizer),
        max_model_len=max_model_len,
        device=torch_device,
        dtype=torch_dtype,
    )


def _iter_safetensors(path: Path) -> Iterator[tuple[str, WeightSource]]:
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors in {path}")
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 - safe_open is not a dict
                yield name, handle.get_slice(name)  # read when the model slices it


def _architecture_max_len(hf_config: Any) -> int:
    max_len = int(hf_config.max_position_embeddings)
    window = getattr(hf_config, "sliding_window", None)
    uses_window = getattr(hf_config, "use_sliding_window", True)
    if window and uses_window and window < max_len:
        # Sliding-window attention is not implemented; stay inside the window, where it is exact.
        log.warning("sliding window %d < context %d: capping max_model_len", window, max_len)
        max_len = int(window)
    return max_len


def _eos_token_ids(path: Path, hf_config: Any, tokenizer: Any) -> tuple[int, ...]:
    ids: list[int] = []
    generation_config = path / "generation_config.json"
    sources: list[Any] = [getattr(hf_config, "eos_token_id", None)]
    if generation_config.exists():
        sources.insert(0, json.loads(generation_config.read_text()).get("eos_token_id"))
    sources.append(getattr(tokenizer, "eos_token_id", None))
    for source in sources:
        for token_id in source if isinstance(source, list) else [source]:
            if isinstance(token_id, int) and token_id not in ids:
                ids.append(token_id)
    return tuple(ids)
