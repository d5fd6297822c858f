"""Policy resolution: quantization auto, InsufficientGPUMemory, fallbacks, server arguments."""

from __future__ import annotations

from typing import Any

import pytest

from llm_operator.api.spec import LLMDeploymentSpec
from llm_operator.api.status import INSUFFICIENT_GPU_MEMORY
from llm_operator.catalog import default_catalog
from llm_operator.resolve import resolve

CATALOG = default_catalog()


def spec(size: str | None, accelerator: str, count: int = 1, **extra: Any) -> LLMDeploymentSpec:
    model: dict[str, Any] = {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct"}
    if size:
        model["parameterCount"] = size
    body: dict[str, Any] = {"model": model, "accelerator": {"type": accelerator, "count": count}}
    body.update(extra)
    return LLMDeploymentSpec.model_validate(body)


# Default batching (4096 context, 64 sequences, 8192 batch tokens); least lossy that fits.
AUTO_TABLE = [
    ("8B", "T4", 1, "int8"),  # 16-bit weights alone (15 GiB) fill a T4; no fp8 before Ada
    ("8B", "L4", 1, "none"),
    ("8B", "A10G", 1, "none"),
    ("8B", "H100-80GB", 1, "none"),
    ("13B", "L4", 1, "fp8"),  # fp8 where the catalog says fp8 ...
    ("13B", "A10G", 1, "int8"),  # ... int8 where it does not
    ("13B", "T4", 1, "int4"),
    ("13B", "L40S", 1, "none"),
    ("70B", "H100-80GB", 1, "fp8"),
    ("70B", "A100-80GB", 1, "int8"),
    ("70B", "L40S", 2, "fp8"),  # int4-g32 (0.625 bytes/parameter) no longer fits one L40S
    ("70B", "H100-80GB", 2, "none"),
    ("70B", "H200", 1, "fp8"),
    ("70B", "L4", 4, "fp8"),
    ("2M", "cpu", 1, "none"),
]


@pytest.mark.parametrize(("size", "accelerator", "count", "expected"), AUTO_TABLE)
def test_quantization_auto_picks_least_lossy_that_fits(
    size: str, accelerator: str, count: int, expected: str
) -> None:
    resolution = resolve(spec(size, accelerator, count), CATALOG)
    assert resolution.ok, resolution.problems
    assert resolution.quantization == expected
    assert resolution.requested_quantization == "auto"
    assert f"quantization auto resolved to {expected}" in resolution.notes


def test_explicit_quantization_that_does_not_fit_says_what_would() -> None:
    resolution = resolve(spec("70B", "L40S", optimization={"quantization": "int8"}), CATALOG)
    assert not resolution.ok
    [problem] = resolution.problems
    assert problem.reason == INSUFFICIENT_GPU_MEMORY
    estimate = resolution.estimate
    assert estimate is not None and estimate.precision == "int8"
    assert problem.message == (
        f"int8 needs {estimate.required_gib:.1f} GiB per replica (weights "
        f"{estimate.weights_gib:.1f} + KV cache {estimate.kv_cache_per_sequence_gib:.1f} for one "
        f"4096-token sequence + runtime overhead {estimate.overhead_gib:.1f}), 1x L40S has 45.0 "
        "GiB; 2x L40S would fit"  # int4-g32 (0.625 bytes/parameter) needs 50 GiB
    )
    assert problem.message.startswith("int8 needs 73.")


def test_auto_that_nothing_fits_names_the_smallest_fitting_count() -> None:
    resolution = resolve(spec("70B", "L4"), CATALOG)
    [problem] = resolution.problems
    assert problem.reason == INSUFFICIENT_GPU_MEMORY
    assert problem.message.startswith("no precision fits: even int4 needs 48.8 GiB per replica")
    assert problem.message.endswith("1x L4 has 22.5 GiB; 4x L4 with fp8 would fit")


def test_nothing_fits_even_sixteen() -> None:
    resolution = resolve(spec("405B", "T4", optimization={"quantization": "none"}), CATALOG)
    assert resolution.problems[0].message.endswith("nothing fits on up to 16x T4")


def test_cpu_checks_the_pod_memory() -> None:
    small = spec("8B", "cpu", server={"resources": {"limits": {"memory": "2Gi"}}})
    [problem] = resolve(small, CATALOG).problems
    assert "cpu pod has 2.0 GiB; raise server.resources.limits.memory" in problem.message
    big = spec("8B", "cpu", server={"resources": {"limits": {"memory": "64Gi"}}})
    assert resolve(big, CATALOG).quantization == "none"


def test_unknown_size_auto_is_none_with_a_note() -> None:
    resolution = resolve(spec(None, "L4"), CATALOG)
    assert resolution.ok and resolution.quantization == "none" and resolution.estimate is None
    assert "parameterCount is not set" in resolution.notes[0]


def test_kv_cache_dtype_auto_follows_compute_dtype() -> None:
    assert resolve(spec("8B", "L4"), CATALOG).kv_cache_dtype == "bf16"
    assert resolve(spec("8B", "T4"), CATALOG).kv_cache_dtype == "fp16"  # no bf16 on Turing
    assert resolve(spec("2M", "cpu"), CATALOG).kv_cache_dtype == "fp32"
    explicit = spec("8B", "L4", optimization={"kvCacheDtype": "fp8"})
    assert resolve(explicit, CATALOG).kv_cache_dtype == "fp8"


def test_fallback_uses_its_own_count_and_quantization() -> None:
    body = LLMDeploymentSpec.model_validate(
        {
            "model": {"uri": "hf://org/llama-70b", "parameterCount": "70B"},
            "optimization": {"quantization": "fp8"},
            "accelerator": {
                "type": "H100-80GB",
                "count": 4,
                "fallbacks": [
                    {"type": "H200", "count": 2},
                    {"type": "A100-80GB", "count": 8, "quantization": "int8"},
                ],
            },
        }
    )
    first, second = resolve(body, CATALOG, 0), resolve(body, CATALOG, 1)
    assert (first.accelerator.name, first.count, first.quantization) == ("H200", 2, "fp8")
    assert (second.accelerator.name, second.count, second.quantization) == ("A100-80GB", 8, "int8")
    assert second.fallback_index == 1 and resolve(body, CATALOG).fallback_index is None
    assert "--tensor-parallel-size" in second.server_args
    assert second.server_args[second.server_args.index("--tensor-parallel-size") + 1] == "8"


def test_server_args_in_order_with_user_args_last() -> None:
    body = spec(
        "8B",
        "L4",
        model={"uri": "pvc://store/llama/8b", "servedName": "chat", "parameterCount": "8B"},
        optimization={
            "quantization": "int8",
            "batching": {"maxConcurrentSequences": 8, "maxBatchTokens": 2048},
            "cache": {"prefix": False, "response": {"enabled": True, "ttlSeconds": 60}},
        },
        server={"args": ["--max-num-seqs", "4", "--log-level", "debug"]},
    )
    assert resolve(body, CATALOG).server_args == (
        "--model", "/models/llama/8b",
        "--served-model-name", "chat",
        "--port", "8000",
        "--dtype", "bf16",
        "--max-model-len", "4096",
        "--max-num-seqs", "8",
        "--max-num-batched-tokens", "2048",
        "--quantization", "int8",
        "--kv-cache-dtype", "bf16",
        "--tensor-parallel-size", "1",
        "--no-enable-prefix-caching",
        "--response-cache",
        "--response-cache-ttl-seconds", "60",
        "--response-cache-max-entries", "10000",
        "--drain-grace-seconds", "30",
        "--max-num-seqs", "4", "--log-level", "debug",
    )  # fmt: skip


def test_unchunked_prefill_and_revision_flags() -> None:
    body = spec(
        "8B",
        "L4",
        model={
            "uri": "hf://org/m",
            "revision": "abc",
            "parameterCount": "8B",
            "maxContextLength": 2048,
        },
        optimization={"batching": {"chunkedPrefill": False, "maxBatchTokens": 2048}},
    )
    args = resolve(body, CATALOG).server_args
    assert args[:4] == ("--model", "hf://org/m", "--revision", "abc")
    assert "--no-chunked-prefill" in args and "--enable-prefix-caching" in args


def test_gpu_node_labels_skip_cloud_labels_shared_by_two_types() -> None:
    a100 = resolve(spec("8B", "A100-80GB"), CATALOG).node_alternatives
    assert [m.key for m in a100] == [
        "nvidia.com/gpu.product",
        "cloud.google.com/gke-accelerator",
    ]  # EKS `a100` names both sizes
    assert resolve(spec("2M", "cpu"), CATALOG).node_alternatives == ()


def test_auto_never_picks_int4_on_cpu_and_explicit_int4_there_says_what_it_costs() -> None:
    # 8B on a 13 GiB pod: int8 needs 14.4 GiB, int4 12.0 GiB
    small = {"server": {"resources": {"limits": {"memory": "13Gi"}}}}
    auto = resolve(spec("8B", "cpu", **small), CATALOG)
    assert auto.quantization != "int4" and not auto.ok
    assert not any("int4 on a CPU pod" in note for note in auto.notes)
    explicit = resolve(spec("8B", "cpu", optimization={"quantization": "int4"}, **small), CATALOG)
    assert explicit.ok and explicit.quantization == "int4"
    assert any("on other CPUs it saves memory but runs slower" in n for n in explicit.notes)
    gpu = resolve(spec("13B", "T4"), CATALOG)
    assert gpu.quantization == "int4" and not any("CPU" in note for note in gpu.notes)
