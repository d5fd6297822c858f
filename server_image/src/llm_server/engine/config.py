"""Engine configuration: frozen, validated once at construction."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineConfig:
    model: str  # path to a Hugging Face-format directory
    dtype: str = "fp32"  # fp32 | bf16 | fp16
    device: str = "auto"  # auto: cuda when available, else cpu
    block_size: int = 16  # tokens per KV block
    num_kv_blocks: int | None = None  # exact block count; overrides the memory budget
    kv_cache_memory_bytes: int | None = None  # None: 90% of free GPU memory, 1 GiB on CPU
    max_num_seqs: int = 64  # sequences in one batch
    max_num_batched_tokens: int = 2048  # token budget of one step
    chunked_prefill: bool = True
    enable_prefix_caching: bool = True  # reuse the KV blocks of shared prompt prefixes
    max_waiting: int = 256  # bounded FIFO queue; beyond it submit raises QueueFullError
    max_model_len: int | None = None  # None: what the model supports
    seed: int = 0  # seeds unseeded requests' generators, so whole runs are reproducible
    tensor_parallel_size: int = 1  # ranks (GPUs) one model is split across
    quantization: str = "none"  # weight quantization: none | int8 | int4 | fp8
    quant_group_size: int | None = None  # int4 only; None: 32 (or what a checkpoint holds)
    kv_cache_dtype: str = "auto"  # auto (the compute dtype) | fp32 | bf16 | fp16 | fp8
    cuda_graphs: bool = True  # replay decode steps as CUDA graphs (CUDA, one rank only)

    def __post_init__(self) -> None:
        if self.dtype not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"dtype must be fp32, bf16 or fp16, got {self.dtype!r}")
        positive = {
            "block_size": self.block_size,
            "max_num_seqs": self.max_num_seqs,
            "max_num_batched_tokens": self.max_num_batched_tokens,
            "max_waiting": self.max_waiting,
            "tensor_parallel_size": self.tensor_parallel_size,
        }
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.num_kv_blocks is not None and self.num_kv_blocks < 1:
            raise ValueError(f"num_kv_blocks must be >= 1, got {self.num_kv_blocks}")
        if self.max_model_len is not None and self.max_model_len < 2:
            raise ValueError(f"max_model_len must be >= 2, got {self.max_model_len}")
        if (
            not self.chunked_prefill
            and self.max_model_len is not None
            and self.max_num_batched_tokens < self.max_model_len
        ):
            raise ValueError("without chunked prefill, max_num_batched_tokens >= max_model_len")
