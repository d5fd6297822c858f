"""Quantization formats: round-trip error bounds, int4 packing, row locality, the stored bytes
per parameter against the shared table (docs/bytes_per_parameter.json), and scheme rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from llm_server.quantization.checkpoint import QuantizedSource
from llm_server.quantization.quantize import (
    dequantize,
    pack_int4,
    quantize,
    storage_shapes,
    unpack_int4,
)
from llm_server.quantization.scheme import (
    INT4_GROUP_SIZES,
    QuantizationError,
    QuantScheme,
    resolve_quantization,
)

TABLE = json.loads(
    (Path(__file__).resolve().parents[3] / "docs" / "bytes_per_parameter.json").read_text()
)
SCHEMES = [QuantScheme("int8"), QuantScheme("fp8")] + [
    QuantScheme("int4", g) for g in INT4_GROUP_SIZES
]


def _weight(rows: int = 48, columns: int = 384, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    magnitudes = torch.logspace(-3, 1, rows)[:, None]  # rows of very different scale
    return torch.randn(rows, columns, generator=generator) * magnitudes


def test_scheme_figures_equal_the_shared_table() -> None:
    precisions = TABLE["precisions"]
    for method in ("none", "int8", "fp8"):
        assert (
            QuantScheme(method).bytes_per_parameter() == precisions[method]["bytes_per_parameter"]
        )
    int4 = precisions["int4"]
    assert QuantScheme("int4").group_size == int4["default_group_size"]
    assert QuantScheme("int4").bytes_per_parameter() == int4["bytes_per_parameter"]
    by_group = {int(g): v for g, v in int4["bytes_per_parameter_by_group_size"].items()}
    assert by_group == {g: QuantScheme("int4", g).bytes_per_parameter() for g in INT4_GROUP_SIZES}


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s.label)
def test_stored_bytes_are_what_the_table_says(scheme: QuantScheme) -> None:
    rows, columns = 64, 512
    q = quantize(_weight(rows, columns), scheme)
    (data_shape, data_dtype), (scale_shape, scale_dtype) = storage_shapes(scheme, rows, columns)
    assert (q.data.shape, q.data.dtype) == (data_shape, data_dtype)
    assert (q.scale.shape, q.scale.dtype) == (scale_shape, scale_dtype)
    per_parameter = (q.data.nbytes + q.scale.nbytes) / (rows * columns)
    channel_scales = 0.0 if scheme.method == "int4" else 4 / columns  # fp32 per row, uncounted
    assert per_parameter == pytest.approx(scheme.bytes_per_parameter() + channel_scales)


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s.label)
def test_round_trip_error_is_within_half_a_step(scheme: QuantScheme) -> None:
    w = _weight()
    q = quantize(w, scheme)
    error = (dequantize(q, scheme, torch.float32) - w).abs()
    if scheme.method == "int8":
        assert (error <= q.scale[:, None] / 2 * (1 + 1e-5)).all()
    elif scheme.method == "int4":
        step = q.scale[:, :, 0].float().repeat_interleave(scheme.group_size or 0, dim=1)
        # half a step, plus the fp16 rounding of the offset (relative 2**-11 of the group's min)
        offset = q.scale[:, :, 1].float().abs().repeat_interleave(scheme.group_size or 0, dim=1)
        assert (error <= step / 2 * (1 + 1e-3) + offset * 2**-11).all()
    else:  # e4m3: 3 mantissa bits, so half a step is 1/16 of the value (subnormals: absolute)
        assert (error <= w.abs() / 16 + q.scale[:, None] * 2**-10).all()


def test_int4_packing_round_trips_every_value_and_puts_even_columns_low() -> None:
    values = torch.arange(0, 16, dtype=torch.uint8).repeat(3, 2)  # [3, 32]
    packed = pack_int4(values)
    assert packed.shape == (3, 16) and packed.dtype == torch.uint8
    assert torch.equal(unpack_int4(packed), values)
    assert packed[0, 0].item() == 0 | (1 << 4)


def test_int4_re_expresses_q4_1_blocks_exactly() -> None:
    """GGUF Q4_1 blocks (d * q + m, fp16 d and m, q in 0..15, each block spanning its range as
    the quantizer makes it) survive int4-g32 bit for bit: why a model dequantized from Q4_1
    loses nothing when it is run as int4-g32 again (and why that says little about others)."""
    generator = torch.Generator().manual_seed(1)
    rows, groups = 8, 6
    d = (torch.rand(rows, groups, 1, generator=generator) * 0.01 + 1e-3).half().float()
    m = (torch.randn(rows, groups, 1, generator=generator) * 0.05).half().float()
    q = torch.randint(0, 16, (rows, groups, 32), generator=generator).float()
    q[:, :, 0], q[:, :, 1] = 0, 15
    w = (d * q + m).view(rows, groups * 32)
    scheme = QuantScheme("int4", 32)
    assert torch.equal(dequantize(quantize(w, scheme), scheme, torch.float32), w)
    # a group of 64 spans two blocks with different grids: no longer exact
    coarse = QuantScheme("int4", 64)
    assert not torch.equal(dequantize(quantize(w, coarse), coarse, torch.float32), w)


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s.label)
def test_quantizing_some_rows_equals_slicing_the_quantized_matrix(scheme: QuantScheme) -> None:
    """Why a packed shard or a column-parallel rank may quantize its own rows alone."""
    w = _weight()
    whole, part = quantize(w, scheme), quantize(w[16:40], scheme)
    assert torch.equal(whole.data[16:40].view(torch.uint8), part.data.view(torch.uint8))
    assert torch.equal(whole.scale[16:40], part.scale)


@pytest.mark.parametrize("group", INT4_GROUP_SIZES)
def test_pre_quantized_column_slices_follow_groups(group: int) -> None:
    """A row-parallel rank's columns of a saved int4 weight equal quantizing those columns."""
    scheme = QuantScheme("int4", group)
    w = _weight(columns=4 * group)
    q = quantize(w, scheme)
    source = QuantizedSource(q.data, q.scale, scheme)
    assert source.get_shape() == [48, 4 * group]
    half = source[:, 2 * group : 4 * group]
    expected = quantize(w[:, 2 * group :], scheme)
    assert torch.equal(half.data, expected.data) and torch.equal(half.scale, expected.scale)
    with pytest.raises(ValueError, match="align"):
        source[:, 16 : 2 * group]


def test_scheme_rules() -> None:
    assert QuantScheme("int4").label == "int4-g32"
    with pytest.raises(ValueError, match="group size 48"):
        QuantScheme("int4", 48)
    with pytest.raises(ValueError, match="int4 only"):
        QuantScheme("int8", 64)
    with pytest.raises(ValueError, match="expected one of"):
        QuantScheme("int3")
    with pytest.raises(QuantizationError, match=r"use one of \[32, 64\]"):
        QuantScheme("int4", 128).check_in_features(192, "mlp.down_proj")
    with pytest.raises(QuantizationError, match="use int8"):
        QuantScheme("int4").check_in_features(200, "mlp.down_proj")


def test_a_pre_quantized_directory_decides_or_must_match() -> None:
    stored = QuantScheme("int4", 64)
    assert resolve_quantization("none", None, stored) == stored
    assert resolve_quantization("int4", None, stored) == stored
    assert resolve_quantization("int4", 64, stored) == stored
    assert resolve_quantization("int8", None, None) == QuantScheme("int8")
    for method, group in (("int8", None), ("int4", 128)):
        with pytest.raises(ValueError, match="pre-quantized int4-g64"):
            resolve_quantization(method, group, stored)


@pytest.mark.usefixtures("cpu_reference_matmuls")
def test_int4_on_cpu_says_once_that_it_saves_memory_not_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Where the packed kernels are off (no native bf16), int4 is dequantized per call."""
    from llm_server.layers import quantized_matmul as matmul

    matmul._warn_slow_on_cpu.cache_clear()
    x = torch.randn(2, 64)
    for scheme in (QuantScheme("int8"), QuantScheme("int4"), QuantScheme("int4")):
        q = quantize(_weight(8, 64), scheme)
        torch.testing.assert_close(
            matmul.quantized_matmul(x, q, scheme), x @ dequantize(q, scheme, torch.float32).T
        )
    warnings = [
        r.getMessage() for r in caplog.records if "saves memory, not time" in r.getMessage()
    ]
    assert warnings == [warnings[0]] and warnings[0].startswith("int4-g32 on this CPU")
