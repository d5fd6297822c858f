"""Load a Hugging Face-format model directory into our model code.

config.json goes through transformers' AutoConfig, the tokenizer through AutoTokenizer, and
the safetensors weights are streamed tensor by tensor into a model built on the meta device.
Tensors are read lazily (safetensors slices), so a tensor-parallel rank reads only its shard.

With weight quantization the projections' storage is made quantized before anything is
allocated, and each checkpoint tensor is quantized as it is copied in, so the full-precision
model never exists in memory. A directory written by `llm-server quantize` is detected by its
llm_server_quantization.json and copied in as is.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from llm_server.gguf_file import is_gguf
from llm_server.layers.cpu_quantized_matmul import packed_kernels_on
from llm_server.layers.linear import Linear, PackedLinear, RowParallelLinear, WeightSource
from llm_server.models.gguf_checkpoint import gguf_config, gguf_tokenizer, gguf_weights
from llm_server.models.llama import LlamaForCausalLM, MistralForCausalLM
from llm_server.models.qwen import Qwen2ForCausalLM, Qwen3ForCausalLM
from llm_server.parallel_state import SINGLE, TensorParallel
from llm_server.quantization.checkpoint import quantized_sources
from llm_server.quantization.quantize import FP8_DTYPE
from llm_server.quantization.scheme import (
    QuantizationError,
    QuantScheme,
    read_scheme,
    resolve_quantization,
)
from llm_server.tensor_parallel_sizes import model_shapes, tensor_parallel_error

log = logging.getLogger(__name__)

MODEL_CLASSES: dict[str, type[LlamaForCausalLM]] = {
    "LlamaForCausalLM": LlamaForCausalLM,
    "MistralForCausalLM": MistralForCausalLM,
    "Qwen2ForCausalLM": Qwen2ForCausalLM,
    "Qwen3ForCausalLM": Qwen3ForCausalLM,
}

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
FP8_MIN_CAPABILITY = (8, 9)  # Ada (L4, L40S) and Hopper (H100, H200) have fp8 tensor cores


@dataclass
class LoadedModel:
    model: LlamaForCausalLM
    tokenizer: Any  # a transformers PreTrainedTokenizerFast
    hf_config: Any
    eos_token_ids: tuple[int, ...]
    max_model_len: int  # what the architecture supports (context window, sliding window)
    device: torch.device
    dtype: torch.dtype
    quantization: QuantScheme = field(default_factory=QuantScheme)
    kv_cache_dtype: torch.dtype | None = None  # None: the compute dtype


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def resolve_kv_cache_dtype(kv_cache_dtype: str, dtype: torch.dtype) -> torch.dtype:
    """auto -> the compute dtype; fp8 -> float8 e4m3; fp32/bf16/fp16 as named. The cache is
    written in its dtype and read back in the compute dtype (attention upcasts on read)."""
    if kv_cache_dtype in ("fp8", "fp8_e4m3"):
        return FP8_DTYPE
    if kv_cache_dtype == "auto":
        return dtype
    if kv_cache_dtype not in DTYPES:
        raise ValueError(f"kv cache dtype {kv_cache_dtype!r}: use auto, fp8, {sorted(DTYPES)}")
    return DTYPES[kv_cache_dtype]


def check_device_support(scheme: QuantScheme, device: torch.device) -> None:
    if scheme.method != "fp8":
        return
    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    if capability is None or capability < FP8_MIN_CAPABILITY:
        where = "a CPU" if capability is None else f"compute capability {capability}"
        raise ValueError(
            f"--quantization fp8 needs a GPU with fp8 support (compute capability 8.9+: "
            f"Ada L4/L40S, Hopper H100/H200); this device is {where}. Use int8 instead"
        )


def quantizable_linears(model: LlamaForCausalLM) -> dict[str, Linear]:
    """The projections weight quantization applies to: q/k/v, o, gate/up and down. The
    embedding and lm_head stay in the compute dtype (see docs/quantization.md)."""
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, PackedLinear | RowParallelLinear)
    }


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of the model's parameters and buffers as resident (tied tensors counted once)."""
    seen: set[int] = set()
    total = 0
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.data_ptr() not in seen and tensor.device.type != "meta":
            seen.add(tensor.data_ptr())
            total += tensor.nbytes
    return total


def quantization_options(config: Any) -> dict[str, Any]:
    """load_model's quantization keywords from an EngineConfig."""
    return {
        "quantization": config.quantization,
        "quant_group_size": config.quant_group_size,
        "kv_cache_dtype": config.kv_cache_dtype,
    }


def load_model(
    model_dir: str | Path,
    dtype: str = "fp32",
    device: str = "auto",
    tp: TensorParallel = SINGLE,
    quantization: str = "none",
    quant_group_size: int | None = None,
    kv_cache_dtype: str = "auto",
) -> LoadedModel:
    from transformers import AutoConfig, AutoTokenizer

    path = Path(model_dir)
    gguf = is_gguf(path)
    stored = None if gguf else read_scheme(path)
    scheme = resolve_quantization(quantization, quant_group_size, stored)
    hf_config = gguf_config(path) if gguf else AutoConfig.from_pretrained(path)
    architectures = getattr(hf_config, "architectures", None) or []
    model_cls = next((MODEL_CLASSES[a] for a in architectures if a in MODEL_CLASSES), None)
    if model_cls is None:
        raise ValueError(f"unsupported architecture {architectures}; have {sorted(MODEL_CLASSES)}")
    error = tensor_parallel_error(tp.size, model_shapes(hf_config.to_dict()))
    if error is not None:
        raise ValueError(error)
    torch_device, torch_dtype = resolve_device(device), resolve_dtype(dtype)
    check_device_support(scheme, torch_device)
    kv_dtype = resolve_kv_cache_dtype(kv_cache_dtype, torch_dtype)
    max_model_len = _architecture_max_len(hf_config)
    with torch.device("meta"):
        model = model_cls.from_hf_config(hf_config, tp)
    model = model.to(torch_dtype)  # still on meta: casting first keeps quantized storage as is
    if scheme.quantized:
        for name, linear in quantizable_linears(model).items():
            try:
                linear.quantize_storage(scheme)
            except ValueError as exc:
                raise QuantizationError(f"--quantization {scheme.method}: {name}: {exc}") from exc
    model = model.to_empty(device=torch_device)
    if model.spec.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight  # to_empty unties them
    model.load_weights(gguf_weights(path, hf_config) if gguf else _iter_safetensors(path, stored))
    if scheme.method in ("int8", "int4") and packed_kernels_on(torch_device):
        _use_packed_cpu_kernels(model, scheme)
    model.rotary.build(torch_device, torch_dtype)
    model.eval().requires_grad_(False)
    for attn in model.attention_layers():
        attn.kv_cache_dtype = kv_dtype
    _log_weights(model, scheme, stored is not None, kv_dtype, tp)
    tokenizer = gguf_tokenizer(path) if gguf else AutoTokenizer.from_pretrained(path)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        hf_config=hf_config,
        eos_token_ids=_eos_token_ids(path, hf_config, tokenizer),
        max_model_len=max_model_len,
        device=torch_device,
        dtype=torch_dtype,
        quantization=scheme,
        kv_cache_dtype=kv_dtype,
    )


def _use_packed_cpu_kernels(model: LlamaForCausalLM, scheme: QuantScheme) -> None:
    """int8 needs nothing (its kernel reads our storage); int4 is repacked layer by layer."""
    layers = list(quantizable_linears(model).values())
    repacked = sum(linear.repack_for_cpu() for linear in layers) if scheme.method == "int4" else 0
    log.info(
        "quantized projections: torch's packed bf16 CPU kernels (this CPU has native bf16)%s",
        f"; {repacked} of {len(layers)} int4 layers repacked for them" if repacked else "",
    )


def _log_weights(
    model: LlamaForCausalLM,
    scheme: QuantScheme,
    pre_quantized: bool,
    kv_dtype: torch.dtype,
    tp: TensorParallel,
) -> None:
    how = "pre-quantized checkpoint" if pre_quantized else "quantized at load time"
    layers = len(quantizable_linears(model)) if scheme.quantized else 0
    log.info(
        "weights: quantization %s%s; %.1f MiB resident on rank %d; kv cache %s",
        scheme.label,
        f" ({how}, {layers} projection layers; embedding and lm_head unquantized)"
        if scheme.quantized else "",
        weight_bytes(model) / 2**20,
        tp.rank,
        str(kv_dtype).removeprefix("torch."),
    )  # fmt: skip


def _iter_safetensors(
    path: Path, stored: QuantScheme | None = None
) -> Iterator[tuple[str, WeightSource]]:
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors in {path}")
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            if stored is not None:
                yield from quantized_sources(handle, stored).items()
                continue
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
