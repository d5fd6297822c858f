"""Memory estimate of one replica: weights + KV cache + runtime overhead, against the devices.

Every number a user sees in an InsufficientGPUMemory message comes from here. The rule of what
"fits" follows vLLM's: weights and runtime overhead must fit, and the rest (the paged KV cache)
must hold at least one `maxContextLength` sequence. Holding `maxConcurrentSequences` of them at
full length is the worst case, reported separately (`kv_cache_full_batch_gib`,
`full_length_sequences`): shorter sequences share the paged cache, so falling short of it
means fewer long sequences run at once, not that the server fails.

Model shapes (layers, KV heads, head size) are not in the spec; `model_shape` derives them from
the parameter count with a table of common shapes, or a conservative formula. Pure: no I/O.

A GGUF model is estimated like any other: `parameterCount` counts parameters (not file bytes),
and the server dequantizes GGUF tensors at load, so the resident weights are those of the
deployment's `quantization` (a Q4 file served with `none` holds 16-bit weights, fp32 on CPU).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

GIB = 1024**3

# Bytes per weight parameter at each precision. The figures live in docs/bytes_per_parameter.json
# (documented in docs/quantization.md); this package and llm_server may not import each other,
# so each keeps its constants and its tests compare them with that file.
#   none  16-bit (bf16, or fp16 where the GPU has no bf16). On CPU the server computes in fp32,
#         so there an unquantized parameter costs DTYPE_BYTES["fp32"] = 4 instead.
#   fp8   e4m3 with per-channel scales (negligible).
#   int8  per-output-channel fp16 scales (negligible).
#   int4  two values per byte, plus per group of INT4_GROUP_SIZE an fp16 step and an fp16
#         offset (asymmetric, the server's default group): 0.5 + 4/32.
INT4_GROUP_SIZE = 32
BYTES_PER_PARAMETER: Mapping[str, float] = {
    "none": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.5 + 4 / INT4_GROUP_SIZE,
}
# Least lossy first: the order `quantization: auto` tries.
PRECISIONS_BY_FIDELITY: tuple[str, ...] = ("none", "fp8", "int8", "int4")
# Element sizes of compute and KV-cache dtypes.
DTYPE_BYTES: Mapping[str, int] = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1}

# Runtime overhead (documented guesses, on the safe side):
CUDA_CONTEXT_GIB = 1.0  # per GPU: CUDA context, cuBLAS/NCCL workspaces, allocator pool
CPU_RUNTIME_GIB = 1.0  # per CPU pod: Python, torch, tokenizer, HTTP server
FRAGMENTATION_FRACTION = 0.05  # of each GPU's memory: allocator fragmentation, driver reserve
# Peak activations of one engine step: about 16 values per hidden unit per batched token (MLP
# gate/up/activation dominate), counted on every GPU (not divided by tensor parallelism).
ACTIVATION_VALUES_PER_HIDDEN = 16
LOGIT_BYTES = 4  # fp32 logits of the last token of each running sequence


@dataclass(frozen=True)
class ModelShape:
    """What the memory arithmetic needs to know about a transformer."""

    name: str  # the table entry, or "formula"
    parameters: int
    layers: int
    hidden: int
    kv_heads: int
    head_dim: int
    vocab: int  # 0 when unknown (the formula): embeddings then count as quantizable weights
    tied_embeddings: bool

    @property
    def unquantized_parameters(self) -> int:
        """Embedding and LM head stay at 16-bit in every precision."""
        return self.vocab * self.hidden * (1 if self.tied_embeddings else 2)

    def kv_bytes_per_token(self, kv_dtype_bytes: int) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * kv_dtype_bytes  # K and V


# Common Llama-like shapes, from the models' config.json. A parameter count within a factor of
# SHAPE_MATCH_FACTOR of an entry uses the nearest entry. All use grouped-query attention except
# the 13B entry (Llama-2-13B, full multi-head: the conservative choice for that size). Older
# multi-head 7B models (Llama-2-7B) need 4x the KV cache the 8B entry assumes.
SHAPE_TABLE: tuple[ModelShape, ...] = (
    ModelShape("SmolLM2-135M", 134_520_000, 30, 576, 3, 64, 49152, True),  # the demo model
    ModelShape("Llama-3.2-1B", 1_240_000_000, 16, 2048, 8, 64, 128256, True),
    ModelShape("Llama-3.2-3B", 3_210_000_000, 28, 3072, 8, 128, 128256, True),
    ModelShape("Llama-3.1-8B", 8_030_000_000, 32, 4096, 8, 128, 128256, False),
    ModelShape("Llama-2-13B", 13_020_000_000, 40, 5120, 40, 128, 32000, False),
    ModelShape("Qwen2.5-32B", 32_760_000_000, 64, 5120, 8, 128, 152064, False),
    ModelShape("Llama-3.1-70B", 70_550_000_000, 80, 8192, 8, 128, 128256, False),
    ModelShape("Llama-3.1-405B", 405_850_000_000, 126, 16384, 8, 128, 128256, False),
)
SHAPE_MATCH_FACTOR = 1.35


def model_shape(parameters: int) -> ModelShape:
    """The table's nearest shape, or the formula for sizes the table does not cover.

    Formula (conservative): a Llama-like model has about 12 x layers x hidden^2 parameters and
    layers ~ hidden / 128, so hidden = (128 P / 12)^(1/3); attention is taken as full multi-head
    (KV width = hidden), the largest KV cache such a model can have.
    """
    nearest = min(SHAPE_TABLE, key=lambda s: abs(math.log(parameters / s.parameters)))
    if abs(math.log(parameters / nearest.parameters)) <= math.log(SHAPE_MATCH_FACTOR):
        return ModelShape(
            nearest.name,
            parameters,
            nearest.layers,
            nearest.hidden,
            nearest.kv_heads,
            nearest.head_dim,
            nearest.vocab,
            nearest.tied_embeddings,
        )
    hidden = max(64, round((128 * parameters / 12) ** (1 / 3) / 64) * 64)
    layers = max(1, round(parameters / (12 * hidden * hidden)))
    head_dim = 64 if hidden < 2048 else 128
    return ModelShape("formula", parameters, layers, hidden, hidden // head_dim, head_dim, 0, True)


@dataclass(frozen=True)
class Workload:
    """What one replica must hold, from the spec."""

    parameters: int
    max_context_length: int
    max_concurrent_sequences: int
    max_batch_tokens: int


@dataclass(frozen=True)
class MemoryEstimate:
    """One replica's memory at one precision, in GiB (float; round only when printing)."""

    precision: str
    dtype: str
    kv_cache_dtype: str
    devices: str  # "4x H100-80GB", "cpu pod"
    shape: ModelShape
    max_context_length: int
    max_concurrent_sequences: int
    weights_gib: float
    kv_cache_per_sequence_gib: float  # one maxContextLength sequence
    overhead_gib: float
    available_gib: float | None  # accelerator memory x count, or the pod's memory; None unknown

    @property
    def kv_cache_full_batch_gib(self) -> float:
        return self.kv_cache_per_sequence_gib * self.max_concurrent_sequences

    @property
    def required_gib(self) -> float:
        """What must fit: weights, overhead and one full-length sequence."""
        return self.weights_gib + self.overhead_gib + self.kv_cache_per_sequence_gib

    @property
    def full_batch_gib(self) -> float:
        """The worst case: every concurrent sequence at full length."""
        return self.weights_gib + self.overhead_gib + self.kv_cache_full_batch_gib

    @property
    def fits(self) -> bool | None:
        return None if self.available_gib is None else self.required_gib <= self.available_gib

    @property
    def fits_full_batch(self) -> bool | None:
        return None if self.available_gib is None else self.full_batch_gib <= self.available_gib

    @property
    def full_length_sequences(self) -> int | None:
        """How many maxContextLength sequences the KV cache holds at once."""
        if self.available_gib is None:
            return None
        room = self.available_gib - self.weights_gib - self.overhead_gib
        return max(0, math.floor(room / self.kv_cache_per_sequence_gib + 1e-9))

    def breakdown(self) -> str:
        """'needs 12.1 GiB (weights 8.5 + KV cache 1.0 for one 8192-token sequence + ...)'."""
        return (
            f"needs {self.required_gib:.1f} GiB per replica (weights {self.weights_gib:.1f} + "
            f"KV cache {self.kv_cache_per_sequence_gib:.1f} for one {self.max_context_length}-"
            f"token sequence + runtime overhead {self.overhead_gib:.1f})"
        )


def estimate_memory(
    workload: Workload,
    *,
    precision: str,
    dtype: str,
    kv_cache_dtype: str,
    device_memory_gib: float | None,
    count: int,
    on_gpu: bool,
    devices: str,
) -> MemoryEstimate:
    """Memory of one replica running `workload` at `precision` on `count` devices.

    `device_memory_gib` is one GPU's memory (on_gpu) or the pod's memory (CPU); None = unknown.
    """
    shape = model_shape(workload.parameters)
    dtype_bytes = DTYPE_BYTES[dtype]
    unquantized = min(shape.unquantized_parameters, workload.parameters)
    per_parameter = dtype_bytes if precision == "none" else BYTES_PER_PARAMETER[precision]
    weights = (workload.parameters - unquantized) * per_parameter + unquantized * dtype_bytes
    kv_per_sequence = shape.kv_bytes_per_token(DTYPE_BYTES[kv_cache_dtype]) * (
        workload.max_context_length
    )
    activations = workload.max_batch_tokens * shape.hidden * ACTIVATION_VALUES_PER_HIDDEN
    activations *= dtype_bytes
    logits = workload.max_concurrent_sequences * max(shape.vocab, 32000) * LOGIT_BYTES
    if on_gpu:
        fragmentation = FRAGMENTATION_FRACTION * (device_memory_gib or 0.0) * count
        overhead = count * (CUDA_CONTEXT_GIB + activations / GIB) + logits / GIB + fragmentation
        available = None if device_memory_gib is None else device_memory_gib * count
    else:
        overhead = CPU_RUNTIME_GIB + (activations + logits) / GIB
        available = device_memory_gib
    return MemoryEstimate(
        precision=precision,
        dtype=dtype,
        kv_cache_dtype=kv_cache_dtype,
        devices=devices,
        shape=shape,
        max_context_length=workload.max_context_length,
        max_concurrent_sequences=workload.max_concurrent_sequences,
        weights_gib=weights / GIB,
        kv_cache_per_sequence_gib=kv_per_sequence / GIB,
        overhead_gib=overhead,
        available_gib=available,
    )


_QUANTITY_SUFFIX: Mapping[str, float] = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
    "k": 1e3,
    "K": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "m": 1e-3,
}


def quantity_gib(quantity: int | str) -> float:
    """A Kubernetes memory quantity ('2Gi', '512Mi', '8G', 1073741824) in GiB."""
    text = str(quantity).strip()
    for suffix in sorted(_QUANTITY_SUFFIX, key=len, reverse=True):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * _QUANTITY_SUFFIX[suffix] / GIB
    return float(text) / GIB
