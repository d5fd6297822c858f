"""Every invalid spec gets exactly one clear message naming the field, from both layers:
the operator/`llmops validate` (pydantic) and the API server's (CRD schema + CEL rules)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from llm_operator.api.admission import admission_errors
from llm_operator.validation import validate_manifest

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    def mutate(manifest: dict[str, Any]) -> None:
        node = manifest["spec"]
        *parents, last = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return mutate


def _delete(path: str) -> Mutation:
    def mutate(manifest: dict[str, Any]) -> None:
        node = manifest["spec"]
        *parents, last = path.split(".")
        for key in parents:
            node = node[key]
        del node[last]

    return mutate


def _all(*mutations: Mutation) -> Mutation:
    def mutate(manifest: dict[str, Any]) -> None:
        for m in mutations:
            m(manifest)

    return mutate


# (case id, mutation of the valid base manifest, the field both layers must name)
INVALID: list[tuple[str, Mutation, str]] = [
    (
        "unknown-quantization",
        _set("optimization.quantization", "int3"),
        "spec.optimization.quantization",
    ),
    (
        "unknown-kv-dtype",
        _set("optimization.kvCacheDtype", "int8"),
        "spec.optimization.kvCacheDtype",
    ),
    ("unknown-capacity", _set("accelerator.capacity", "preemptible"), "spec.accelerator.capacity"),
    ("unknown-autoscaling-mode", _set("autoscaling.mode", "hpa"), "spec.autoscaling.mode"),
    ("unknown-gpu", _set("accelerator.type", "V100"), "spec.accelerator.type"),
    (
        "unknown-fallback-gpu",
        _set("accelerator.fallbacks", [{"type": "RTX4090"}]),
        "spec.accelerator.fallbacks[0].type",
    ),
    ("min-above-max", _set("replicas", {"min": 5, "max": 2}), "spec.replicas.min"),
    ("max-zero", _set("replicas", {"min": 0, "max": 0}), "spec.replicas.max"),
    (
        "negative-budget",
        _set("autoscaling.budget.maxDollarsPerHour", -3),
        "spec.autoscaling.budget.maxDollarsPerHour",
    ),
    (
        "zero-budget",
        _set("autoscaling.budget.maxDollarsPerHour", 0),
        "spec.autoscaling.budget.maxDollarsPerHour",
    ),
    (
        "budget-without-amount",
        _set("autoscaling.budget", {}),
        "spec.autoscaling.budget.maxDollarsPerHour",
    ),
    ("ftp-uri", _set("model.uri", "ftp://example.com/model"), "spec.model.uri"),
    ("hf-uri-without-org", _set("model.uri", "hf://llama-3-8b"), "spec.model.uri"),
    ("s3-uri-bad-bucket", _set("model.uri", "s3://My_Bucket/model"), "spec.model.uri"),
    ("pvc-uri-bad-claim", _set("model.uri", "pvc://Bad_Claim/m"), "spec.model.uri"),
    ("file-uri-relative", _set("model.uri", "file://models/x"), "spec.model.uri"),
    ("missing-uri", _delete("model.uri"), "spec.model.uri"),
    ("missing-accelerator", _delete("accelerator"), "spec.accelerator"),
    (
        "fp8-on-t4",
        _all(_set("accelerator", {"type": "T4"}), _set("optimization.quantization", "fp8")),
        "spec.optimization.quantization",
    ),
    (
        "fp8-on-a100",
        _all(_set("accelerator", {"type": "A100-80GB"}), _set("optimization.quantization", "fp8")),
        "spec.optimization.quantization",
    ),
    (
        "fp8-inherited-by-a10g-fallback",
        _all(
            _set("accelerator", {"type": "H100-80GB", "fallbacks": [{"type": "A10G"}]}),
            _set("optimization.quantization", "fp8"),
        ),
        "spec.accelerator.fallbacks",
    ),
    (
        "fp8-fallback-on-t4",
        _set("accelerator.fallbacks", [{"type": "T4", "quantization": "fp8"}]),
        "spec.accelerator.fallbacks",
    ),
    (
        "duplicate-fallbacks",
        _set("accelerator.fallbacks", [{"type": "A10G"}, {"type": "A10G"}]),
        "spec.accelerator.fallbacks",
    ),
    (
        "fallback-equals-primary",
        _set("accelerator.fallbacks", [{"type": "L4", "count": 1}]),
        "spec.accelerator.fallbacks",
    ),
    (
        "too-many-fallbacks",
        _set(
            "accelerator.fallbacks",
            [{"type": t} for t in ("T4", "A10G", "L40S", "A100-40GB", "A100-80GB")],
        ),
        "spec.accelerator.fallbacks",
    ),
    ("zero-gpus", _set("accelerator.count", 0), "spec.accelerator.count"),
    ("too-many-gpus", _set("accelerator.count", 17), "spec.accelerator.count"),
    (
        "batch-tokens-below-sequences",
        _set("optimization.batching", {"maxConcurrentSequences": 256, "maxBatchTokens": 128}),
        "spec.optimization.batching.maxBatchTokens",
    ),
    (
        "unchunked-prefill-too-small",
        _set("optimization.batching", {"chunkedPrefill": False, "maxBatchTokens": 2048}),
        "spec.optimization.batching.maxBatchTokens",
    ),
    (
        "too-many-sequences",
        _set("optimization.batching", {"maxConcurrentSequences": 5000}),
        "spec.optimization.batching.maxConcurrentSequences",
    ),
    ("context-too-short", _set("model.maxContextLength", 64), "spec.model.maxContextLength"),
    (
        "scale-to-zero-with-keda",
        _all(_set("replicas.min", 0), _set("autoscaling.mode", "keda")),
        "spec.replicas.min",
    ),
    (
        "zero-queue-target",
        _set("autoscaling.targetQueueDepth", 0),
        "spec.autoscaling.targetQueueDepth",
    ),
    (
        "zero-running-target",
        _set("autoscaling.advanced.targetRunningPerReplica", 0),
        "spec.autoscaling.advanced.targetRunningPerReplica",
    ),
    (
        "unknown-load-signal",
        _set("autoscaling.advanced.loadSignal", "loudest"),
        "spec.autoscaling.advanced.loadSignal",
    ),
    (
        "negative-scale-down-window",
        _set("autoscaling.scaleDownStabilizationSeconds", -1),
        "spec.autoscaling.scaleDownStabilizationSeconds",
    ),
    (
        "zero-prompt-token-target",
        _set("autoscaling.advanced.targetPromptTokensPerSecond", 0),
        "spec.autoscaling.advanced.targetPromptTokensPerSecond",
    ),
    (
        "load-average-over-an-hour",
        _set("autoscaling.advanced.loadAverageSeconds", 7200),
        "spec.autoscaling.advanced.loadAverageSeconds",
    ),
    (
        "load-percentile-without-a-window",
        _set("autoscaling.advanced.loadPercentile", 90),
        "spec.autoscaling.advanced.loadPercentile",
    ),
    (
        "load-percentile-zero",
        _all(
            _set("autoscaling.advanced.loadAverageSeconds", 600),
            _set("autoscaling.advanced.loadPercentile", 0),
        ),
        "spec.autoscaling.advanced.loadPercentile",
    ),
    (
        "zero-response-ttl",
        _set("optimization.cache.response", {"enabled": True, "ttlSeconds": 0}),
        "spec.optimization.cache.response.ttlSeconds",
    ),
    ("misspelt-block", _set("optimisation", {"quantization": "int8"}), "spec.optimisation"),
    (
        "env-value-and-valueFrom",
        _set(
            "server.env",
            [{"name": "A", "value": "1", "valueFrom": {"secretKeyRef": {"name": "s"}}}],
        ),
        "spec.server.env[0].valueFrom",
    ),
    (
        "duplicate-env",
        _set("server.env", [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]),
        "spec.server.env",
    ),
    (
        "bad-env-name",
        _set("server.env", [{"name": "1=BAD", "value": "x"}]),
        "spec.server.env[0].name",
    ),
    (
        "api-key-secret-and-api-key-env",
        _all(
            _set("server.apiKeySecret", {"name": "keys", "key": "api-key"}),
            _set("server.env", [{"name": "LLM_SERVER_API_KEY", "value": "k"}]),
        ),
        "spec.server.apiKeySecret",
    ),
    (
        "api-key-secret-without-key",
        _set("server.apiKeySecret", {"name": "keys"}),
        "spec.server.apiKeySecret.key",
    ),
    (
        "api-key-secret-bad-name",
        _set("server.apiKeySecret", {"name": "Keys_1", "key": "api-key"}),
        "spec.server.apiKeySecret.name",
    ),
    (
        "bad-quantity",
        _set("server.resources", {"requests": {"cpu": "2 cores"}}),
        "spec.server.resources.requests.cpu",
    ),
    ("bad-parameter-count", _set("model.parameterCount", "8 billion"), "spec.model.parameterCount"),
    ("bad-served-name", _set("model.servedName", "my model"), "spec.model.servedName"),
    ("wrong-type-count", _set("accelerator.count", "two"), "spec.accelerator.count"),
]


def _mutated(mutation: Mutation, manifest: dict[str, Any]) -> dict[str, Any]:
    mutation(manifest)
    return manifest


def test_the_table_is_big_enough() -> None:
    assert len(INVALID) >= 30
    assert len({case for case, _, _ in INVALID}) == len(INVALID)


def test_base_manifest_is_valid_in_both_layers(manifest: dict[str, Any]) -> None:
    assert validate_manifest(manifest)[1] == []
    assert admission_errors(manifest) == []


@pytest.mark.parametrize(("case", "mutation", "field"), INVALID, ids=[c for c, _, _ in INVALID])
def test_llmops_validate_names_the_field_once(
    case: str, mutation: Mutation, field: str, manifest: dict[str, Any]
) -> None:
    resource, problems = validate_manifest(_mutated(mutation, manifest))
    assert resource is None
    assert [p.path for p in problems] == [field], [str(p) for p in problems]
    problem = problems[0]
    # Every message says what is wrong and how to fix it.
    assert problem.message and problem.hint, str(problem)


@pytest.mark.parametrize(("case", "mutation", "field"), INVALID, ids=[c for c, _, _ in INVALID])
def test_api_server_layer_names_the_field_once(
    case: str, mutation: Mutation, field: str, manifest: dict[str, Any]
) -> None:
    errors = admission_errors(_mutated(mutation, manifest))
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{field}: "), errors[0]


# Valid specs right at the edge of a rule: both layers must accept them.
VALID_EDGES: list[tuple[str, Mutation]] = [
    (
        "scale-to-zero-with-mode-none",
        _all(_set("replicas.min", 0), _set("autoscaling.mode", "none")),
    ),
    ("scale-to-zero-with-builtin", _set("replicas.min", 0)),
    (
        "fp8-inherited-by-fp8-capable-fallback",
        _all(
            _set("accelerator", {"type": "H100-80GB", "fallbacks": [{"type": "L40S"}]}),
            _set("optimization.quantization", "fp8"),
        ),
    ),
    (
        "fp8-primary-with-int8-override-on-a100",
        _all(
            _set(
                "accelerator",
                {"type": "H100-80GB", "fallbacks": [{"type": "A100-80GB", "quantization": "int8"}]},
            ),
            _set("optimization.quantization", "fp8"),
        ),
    ),
    ("same-type-other-count-fallback", _set("accelerator.fallbacks", [{"type": "L4", "count": 2}])),
    (
        "load-percentile-100-over-one-second",
        _all(
            _set("autoscaling.advanced.loadAverageSeconds", 1),
            _set("autoscaling.advanced.loadPercentile", 100),
        ),
    ),
    (
        "unchunked-prefill-big-enough",
        _set("optimization.batching", {"chunkedPrefill": False, "maxBatchTokens": 8192}),
    ),
    (
        "batch-tokens-equal-sequences",
        _set("optimization.batching", {"maxConcurrentSequences": 64, "maxBatchTokens": 64}),
    ),
    ("min-equals-max", _set("replicas", {"min": 3, "max": 3})),
    ("every-uri-scheme", _set("model.uri", "oci://registry.example.com/models/llama:8b")),
    (
        "int-quantity-and-env-from-secret",
        _set(
            "server",
            {
                "resources": {"limits": {"memory": 1073741824, "cpu": "500m"}},
                "env": [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "t"}}}],
            },
        ),
    ),
]


@pytest.mark.parametrize(("case", "mutation"), VALID_EDGES, ids=[c for c, _ in VALID_EDGES])
def test_both_layers_accept_edge_cases(
    case: str, mutation: Mutation, manifest: dict[str, Any]
) -> None:
    edited = _mutated(mutation, manifest)
    assert validate_manifest(edited)[1] == []
    assert admission_errors(edited) == []
