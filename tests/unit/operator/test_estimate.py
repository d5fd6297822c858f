"""The memory arithmetic: the bytes table, the shape table, and what "fits" means."""

from __future__ import annotations

import pytest

from llm_operator.estimate import (
    BYTES_PER_PARAMETER,
    GIB,
    PRECISIONS_BY_FIDELITY,
    SHAPE_TABLE,
    MemoryEstimate,
    Workload,
    estimate_memory,
    model_shape,
    quantity_gib,
)


def test_bytes_per_parameter_table() -> None:
    assert dict(BYTES_PER_PARAMETER) == {"none": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.625}
    assert PRECISIONS_BY_FIDELITY == ("none", "fp8", "int8", "int4")


@pytest.mark.parametrize(
    ("parameters", "shape"),
    [
        (8_000_000_000, "Llama-3.1-8B"),
        (7_000_000_000, "Llama-3.1-8B"),
        (13_000_000_000, "Llama-2-13B"),
        (70_000_000_000, "Llama-3.1-70B"),
        (1_000_000_000, "Llama-3.2-1B"),
        (135_000_000, "SmolLM2-135M"),
        (2_000_000, "formula"),
        (180_000_000_000, "formula"),
    ],
)
def test_shape_from_parameter_count(parameters: int, shape: str) -> None:
    assert model_shape(parameters).name == shape
    assert model_shape(parameters).parameters == parameters


def test_shape_table_is_consistent_with_its_parameter_counts() -> None:
    """12 x layers x hidden^2 + embeddings is near the stated count: catches typos in the table.

    Qwen2.5-32B's MLP is wider (5.4 x hidden, not 3.5 x), hence the low bound.
    """
    for shape in SHAPE_TABLE:
        approx = 12 * shape.layers * shape.hidden**2 + shape.unquantized_parameters
        assert 0.6 < approx / shape.parameters < 1.25, shape.name


def test_formula_shape_is_multi_head_and_about_the_right_size() -> None:
    shape = model_shape(180_000_000_000)
    assert shape.kv_heads * shape.head_dim == shape.hidden  # conservative: full multi-head
    assert 0.7 < 12 * shape.layers * shape.hidden**2 / 180e9 < 1.4


def _l4(precision: str, **workload: int) -> MemoryEstimate:
    values = {
        "parameters": 8_030_000_000,
        "max_context_length": 8192,
        "max_concurrent_sequences": 32,
        "max_batch_tokens": 4096,
    }
    values.update(workload)
    return estimate_memory(
        Workload(**values),
        precision=precision,
        dtype="bf16",
        kv_cache_dtype="fp16",
        device_memory_gib=22.5,
        count=1,
        on_gpu=True,
        devices="1x L4",
    )


def test_llama_8b_int8_on_l4_numbers() -> None:
    estimate = _l4("int8")
    embeddings = 2 * 128256 * 4096  # untied embedding + LM head stay 16-bit
    assert estimate.weights_gib == pytest.approx(
        ((8_030_000_000 - embeddings) * 1 + embeddings * 2) / GIB
    )
    # K and V x 32 layers x 8 KV heads x 128 x 2 bytes = 128 KiB per token.
    assert estimate.kv_cache_per_sequence_gib == pytest.approx(8192 * 128 * 1024 / GIB)
    assert estimate.kv_cache_full_batch_gib == pytest.approx(32.0)
    assert estimate.fits is True and estimate.fits_full_batch is False
    assert estimate.full_length_sequences == 11
    assert estimate.available_gib == 22.5


def test_precision_order_is_monotonic_in_weights() -> None:
    weights = [_l4(p).weights_gib for p in ("none", "int8", "int4")]
    assert weights == sorted(weights, reverse=True)


def test_kv_cache_scales_with_context() -> None:
    short = _l4("int8", max_context_length=4096)
    assert short.kv_cache_per_sequence_gib * 2 == pytest.approx(
        _l4("int8").kv_cache_per_sequence_gib
    )


def test_unknown_memory_means_unknown_fit() -> None:
    estimate = estimate_memory(
        Workload(8_000_000_000, 4096, 8, 4096),
        precision="none",
        dtype="fp32",
        kv_cache_dtype="fp32",
        device_memory_gib=None,
        count=1,
        on_gpu=False,
        devices="cpu pod",
    )
    assert estimate.fits is None and estimate.full_length_sequences is None
    assert estimate.weights_gib == pytest.approx(8e9 * 4 / GIB)  # fp32 on CPU


@pytest.mark.parametrize(
    ("quantity", "gib"),
    [("2Gi", 2.0), ("512Mi", 0.5), ("1073741824", 1.0), (1073741824, 1.0), ("1G", 1e9 / GIB)],
)
def test_quantity_gib(quantity: int | str, gib: float) -> None:
    assert quantity_gib(quantity) == pytest.approx(gib)
