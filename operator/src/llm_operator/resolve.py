"""Policy resolution: from a spec and the catalog to what the pods actually run.

`resolve(spec, catalog, option)` picks the accelerator option (primary or a fallback), resolves
`quantization: auto` and `kvCacheDtype: auto`, checks the memory estimate and builds the
llm-server arguments. It never raises on a spec that does not fit: the problem comes back as
data (reason + message) for the status, so a bad spec is a condition, not a crash loop.

`quantization: auto` picks the least lossy precision that fits (weights + runtime overhead +
one `maxContextLength` sequence of KV cache, see estimate.py), trying none -> fp8 (where the
catalog says fp8) -> int8 -> int4 (where the catalog says int4; never on CPU, where int4 runs
several times slower than fp32: docs/benchmarks/quant_cpu_decode.md). It does not quantize further
just to hold every concurrent sequence at full length: a note reports how many it holds. When
nothing fits: InsufficientGPUMemory, saying what would. Unknown size (no `parameterCount`): auto
means none, and nothing is checked (a note says so).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from llm_operator.api.spec import LLMDeploymentSpec
from llm_operator.api.status import INSUFFICIENT_GPU_MEMORY, INVALID_SPEC
from llm_operator.catalog import Accelerator, Capacity, Catalog
from llm_operator.estimate import (
    PRECISIONS_BY_FIDELITY,
    MemoryEstimate,
    Workload,
    estimate_memory,
    quantity_gib,
)

SERVER_PORT = 8000
DRAIN_SECONDS = 30  # how long in-flight requests may finish after SIGTERM
CPU_DEFAULT_MEMORY = "4Gi"  # a CPU pod's memory when server.resources does not say
TENSOR_PARALLEL_SIZES = (1, 2, 4, 8, 16)  # counts suggested when memory is short


class EstimateAt(Protocol):
    """Estimate of the option being resolved at another precision or device count."""

    def __call__(self, precision: str, devices: int) -> MemoryEstimate: ...


@dataclass(frozen=True)
class Problem:
    """Why a spec cannot be resolved: a condition reason and a precise message."""

    reason: str
    message: str


@dataclass(frozen=True)
class NodeMatch:
    """A node carries label `key` with one of `values`."""

    key: str
    values: tuple[str, ...]


GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"


def node_alternatives(entry: Accelerator, catalog: Catalog) -> tuple[NodeMatch, ...]:
    """Labels that identify the accelerator's nodes, any one sufficing.

    nvidia.com/gpu.product (GPU feature discovery; any cloud, on-prem) plus each managed-cloud
    label from the catalog, except a cloud label another catalog entry shares (EKS `a100` names
    both A100 sizes): matching it could put an 80 GB model on a 40 GB GPU.
    """
    if entry.is_cpu:
        return ()
    matches = [NodeMatch(GPU_PRODUCT_LABEL, entry.product_labels)] if entry.product_labels else []
    for _, label in sorted(entry.cloud_labels.items()):
        shared = any(
            other.name != entry.name and label in other.cloud_labels.values()
            for other in catalog.accelerators
        )
        if not shared:
            matches.append(NodeMatch(label.key, (label.value,)))
    return tuple(matches)


@dataclass(frozen=True)
class Resolution:
    """What one accelerator option of a spec resolves to."""

    accelerator: Accelerator
    count: int
    capacity: Capacity
    fallback_index: int | None  # index in spec.accelerator.fallbacks; None = primary
    requested_quantization: str
    quantization: str  # never auto
    dtype: str  # compute dtype: bf16, fp16 (no bf16 before compute capability 8.0), fp32 (cpu)
    kv_cache_dtype: str  # never auto
    estimate: MemoryEstimate | None  # None when parameterCount is unknown
    server_args: tuple[str, ...]
    node_alternatives: tuple[NodeMatch, ...]  # ORed ways to recognise its nodes; () = any node
    problems: tuple[Problem, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def devices(self) -> str:
        return "cpu pod" if self.accelerator.is_cpu else f"{self.count}x {self.accelerator.name}"


def compute_dtype(accelerator: Accelerator) -> str:
    if accelerator.is_cpu:
        return "fp32"
    major = int(accelerator.compute_capability.split(".")[0] or 0)
    return "bf16" if major >= 8 else "fp16"


def supported_precisions(accelerator: Accelerator) -> tuple[str, ...]:
    return tuple(
        p
        for p in PRECISIONS_BY_FIDELITY
        if (p != "fp8" or accelerator.fp8) and (p != "int4" or accelerator.int4)
    )


def pod_memory_gib(spec: LLMDeploymentSpec) -> float:
    """The memory a CPU pod gets: its limit, else its request, else the operator's default."""
    resources = spec.server.resources
    if resources is not None:
        for source in (resources.limits, resources.requests):
            if "memory" in source:
                return quantity_gib(source["memory"])
    return quantity_gib(CPU_DEFAULT_MEMORY)


def _option(spec: LLMDeploymentSpec, index: int | None) -> tuple[str, int, str]:
    accelerator, quantization = spec.accelerator, spec.optimization.quantization
    if index is None:
        return accelerator.type, accelerator.count, quantization
    fallback = accelerator.fallbacks[index]
    return fallback.type, fallback.count, fallback.quantization or quantization


def resolve(
    spec: LLMDeploymentSpec, catalog: Catalog, accelerator_option_index: int | None = None
) -> Resolution:
    """Resolve the primary accelerator (index None) or spec.accelerator.fallbacks[index]."""
    type_name, count, requested = _option(spec, accelerator_option_index)
    entry = catalog.get(type_name)
    if entry is None:
        raise KeyError(f"accelerator {type_name!r} is not in the catalog")
    dtype = compute_dtype(entry)
    kv_dtype = (
        dtype if spec.optimization.kv_cache_dtype == "auto" else spec.optimization.kv_cache_dtype
    )
    parameters = spec.model.parameters
    notes: list[str] = []
    problems: list[Problem] = []
    estimate: MemoryEstimate | None = None

    def at(precision: str, devices: int = count) -> MemoryEstimate:
        assert parameters is not None
        batching = spec.optimization.batching
        workload = Workload(
            parameters,
            spec.model.max_context_length,
            batching.max_concurrent_sequences,
            batching.max_batch_tokens,
        )
        return estimate_memory(
            workload,
            precision=precision,
            dtype=dtype,
            kv_cache_dtype=kv_dtype,
            device_memory_gib=pod_memory_gib(spec) if entry.is_cpu else entry.memory_gib,
            count=devices,
            on_gpu=not entry.is_cpu,
            devices="cpu pod" if entry.is_cpu else f"{devices}x {entry.name}",
        )

    supported = supported_precisions(entry)
    if requested != "auto" and requested not in supported:
        # The CRD refuses fp8 on non-fp8 types; this catches a catalog override that disagrees.
        problems.append(Problem(INVALID_SPEC, f"{entry.name} does not support {requested}"))
        quantization = requested
    elif parameters is None:
        quantization = "none" if requested == "auto" else requested
        notes.append(
            "model.parameterCount is not set, so memory was not checked"
            + ("; quantization auto resolved to none" if requested == "auto" else "")
        )
    else:
        candidates = _auto_candidates(entry, supported) if requested == "auto" else (requested,)
        estimates = [at(p, count) for p in candidates]
        chosen = next((e for e in estimates if e.fits is not False), None)
        if chosen is None:
            estimate = estimates[-1]
            quantization = estimate.precision
            problems.append(
                Problem(INSUFFICIENT_GPU_MEMORY, _too_small(estimate, requested, supported, at))
            )
        else:
            estimate, quantization = chosen, chosen.precision
            notes.extend(_estimate_notes(chosen, requested))
    if quantization == "int4" and entry.is_cpu:
        notes.append(CPU_INT4_NOTE)
    resolution = Resolution(
        accelerator=entry,
        count=count,
        capacity=spec.accelerator.capacity,
        fallback_index=accelerator_option_index,
        requested_quantization=requested,
        quantization=quantization,
        dtype=dtype,
        kv_cache_dtype=kv_dtype,
        estimate=estimate,
        server_args=(),
        node_alternatives=node_alternatives(entry, catalog),
        problems=tuple(problems),
        notes=tuple(notes),
    )
    return _with_args(resolution, spec)


# Measured: docs/benchmarks/quant_cpu_decode.md. Which path a pod gets depends on its node's
# CPU, which the operator cannot see.
CPU_INT4_NOTE = (
    "int4 on a CPU pod decodes fastest where the node's CPU has native bf16 (AVX512-BF16 or "
    "AMX: packed kernels); on other CPUs it saves memory but runs slower than fp32 (each "
    "layer's weight is dequantized per step; docs/benchmarks/quant_cpu_decode.md)"
)


def _auto_candidates(entry: Accelerator, supported: tuple[str, ...]) -> tuple[str, ...]:
    """What auto may pick: on CPU not int4, which is slower than fp32 on CPUs without native
    bf16, and the node's CPU is not known here."""
    return tuple(p for p in supported if not (entry.is_cpu and p == "int4"))


def _estimate_notes(estimate: MemoryEstimate, requested: str) -> list[str]:
    notes = []
    if requested == "auto":
        notes.append(f"quantization auto resolved to {estimate.precision}")
    if estimate.available_gib is None:
        notes.append("the pod's memory is unknown, so memory was not checked")
    elif not estimate.fits_full_batch:
        notes.append(
            f"the KV cache holds {estimate.full_length_sequences} full-length "
            f"({estimate.max_context_length}-token) sequences of "
            f"{estimate.max_concurrent_sequences} concurrent; shorter sequences share the rest "
            f"(worst case {estimate.full_batch_gib:.1f} GiB, {estimate.devices} has "
            f"{estimate.available_gib:.1f} GiB)"
        )
    return notes


def _too_small(
    smallest: MemoryEstimate, requested: str, supported: tuple[str, ...], at: EstimateAt
) -> str:
    """'int8 needs 41.2 GiB per replica (...), 1x L4 has 22.5 GiB; int4 would fit, or 2x L4'."""
    head = (
        smallest.precision
        if requested != "auto"
        else f"no precision fits: even {smallest.precision}"
    )
    message = (
        f"{head} {smallest.breakdown()}, {smallest.devices} has {smallest.available_gib:.1f} GiB"
    )
    if smallest.devices == "cpu pod":
        return message + "; raise server.resources.limits.memory or use a GPU"
    count_text, _, name = smallest.devices.partition("x ")
    tried = supported if requested == "auto" else (requested,)
    alternatives = []
    if requested != "auto":
        lossier = supported[supported.index(requested) + 1 :] if requested in supported else ()
        smaller = next((p for p in lossier if at(p, int(count_text)).fits), None)
        if smaller:
            alternatives.append(f"{smaller} would fit")
    for devices in (n for n in TENSOR_PARALLEL_SIZES if n > int(count_text)):
        fitting = next((p for p in tried if at(p, devices).fits), None)
        if fitting:
            with_precision = f" with {fitting}" if requested == "auto" else ""
            alternatives.append(f"{devices}x {name}{with_precision}")
            break
    if not alternatives:
        return f"{message}; nothing fits on up to {TENSOR_PARALLEL_SIZES[-1]}x {name}"
    if len(alternatives) == 2:
        return f"{message}; {alternatives[0]}, or {alternatives[1]}"
    suffix = "" if alternatives[0].endswith("would fit") else " would fit"
    return f"{message}; {alternatives[0]}{suffix}"


def server_flag(name: str, value: object) -> tuple[str, str]:
    return f"--{name}", str(value)


def _with_args(resolution: Resolution, spec: LLMDeploymentSpec) -> Resolution:
    """llm-server arguments: resolved policy first, then spec.server.args (last wins)."""
    model, batching, cache = spec.model, spec.optimization.batching, spec.optimization.cache
    args: list[str] = [
        *server_flag("model", model_argument(model.uri)),
        *(server_flag("revision", model.revision) if model.revision else ()),
        *server_flag("served-model-name", model.served_model_name),
        *server_flag("port", SERVER_PORT),
        *server_flag("dtype", resolution.dtype),
        *server_flag("max-model-len", model.max_context_length),
        *server_flag("max-num-seqs", batching.max_concurrent_sequences),
        *server_flag("max-num-batched-tokens", batching.max_batch_tokens),
        *(() if batching.chunked_prefill else ("--no-chunked-prefill",)),
        *server_flag("quantization", resolution.quantization),
        *server_flag("kv-cache-dtype", resolution.kv_cache_dtype),
    ]
    if not resolution.accelerator.is_cpu:
        args += server_flag("tensor-parallel-size", resolution.count)
    args.append("--enable-prefix-caching" if cache.prefix else "--no-enable-prefix-caching")
    if cache.response.enabled:
        args += [
            "--response-cache",
            *server_flag("response-cache-ttl-seconds", cache.response.ttl_seconds),
            *server_flag("response-cache-max-entries", cache.response.max_entries),
        ]
    args += server_flag("drain-grace-seconds", DRAIN_SECONDS)
    args += spec.server.args
    return replace(resolution, server_args=tuple(args))


MODEL_MOUNT = "/models"  # where a pvc:// claim or an oci:// image volume is mounted (read-only)


def model_argument(uri: str) -> str:
    """What `--model` gets for a model URI.

    file:///PATH -> PATH (a node directory, mounted at the same path); pvc://CLAIM/PATH ->
    /models/PATH (the claim mounted read-only); oci://REF -> /models (the artifact mounted as an
    image volume); hf://, s3://, gs:// -> the URI as is (the server fetches it into the model
    cache volume).
    """
    if uri.startswith("file://"):
        return uri.removeprefix("file://")
    if uri.startswith("pvc://"):
        _, _, path = uri.removeprefix("pvc://").partition("/")
        return f"{MODEL_MOUNT}/{path}".rstrip("/")
    if uri.startswith("oci://"):
        return MODEL_MOUNT
    return uri
