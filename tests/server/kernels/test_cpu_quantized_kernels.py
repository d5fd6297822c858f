"""The packed bf16 CPU kernels (int8 `_weight_int8pack_mm`, int4 `_weight_int4pack_mm_for_cpu`)
against the fp32 dequantize + matmul reference: both row-count branches of int8, every int4
group size, the repacking of a loaded int4 layer (same bytes, old layout gone), and the loader
and dispatch choosing them only where they are on. They run on any CPU (emulated bf16 where
the CPU has none), so these tests run everywhere."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from kernel_tolerance import RELATIVE_TOLERANCE

from llm_server.layers.attention import AttentionMetadata, PrefillSegment
from llm_server.layers.cpu_quantized_matmul import INT8PACK_MAX_ROWS, Int4Pack, int8_matmul_bf16
from llm_server.layers.linear import Linear
from llm_server.layers.quantized_matmul import quantized_matmul, reference_matmul
from llm_server.models.loader import LoadedModel, load_model, quantizable_linears
from llm_server.quantization.quantize import QuantizedTensor, quantize
from llm_server.quantization.scheme import INT4_GROUP_SIZES, QuantScheme
from llm_server.tiny_model import build_tiny_model

BF16 = RELATIVE_TOLERANCE[torch.bfloat16]  # of the reference's largest magnitude


def _weights(n: int, k: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    # Rows of very different magnitude, so a wrong per-row scale cannot go unnoticed.
    return torch.randn(n, k, generator=generator) * torch.logspace(-2, 1, n)[:, None]


def _assert_bf16_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    limit = BF16 * expected.abs().max().item()
    error = (actual - expected).abs().max().item()
    assert error <= limit, f"max error {error:.3g} > {limit:.3g}"


@pytest.mark.parametrize("rows", [1, INT8PACK_MAX_ROWS, INT8PACK_MAX_ROWS + 1, 70])
def test_int8_matches_the_reference_in_both_branches(rows: int) -> None:
    scheme = QuantScheme("int8")
    q = quantize(_weights(48, 96, rows), scheme)
    x = torch.randn(rows, 96)
    _assert_bf16_close(int8_matmul_bf16(x, q.data, q.scale), reference_matmul(x, q, scheme))


@pytest.mark.parametrize("rows", [1, 7, 33])
@pytest.mark.parametrize("group", INT4_GROUP_SIZES)
def test_int4_pack_matches_the_reference_for_every_group_size(group: int, rows: int) -> None:
    scheme = QuantScheme("int4", group)
    q = quantize(_weights(48, 3 * group, group + rows), scheme)
    pack = Int4Pack.from_stored(q.data, q.scale, group)
    x = torch.randn(2, rows, 3 * group)  # leading dimensions are kept
    _assert_bf16_close(pack.matmul(x), reference_matmul(x, q, scheme))


def test_int4_pack_takes_whole_blocks_of_16_rows_only() -> None:
    assert Int4Pack.fits(48, 32) and Int4Pack.fits(960, 128)
    assert not Int4Pack.fits(37, 32)


def _loaded_int4_linear(out_features: int) -> Linear:
    layer = Linear(64, out_features)
    layer.quantize_storage(QuantScheme("int4", 32))
    layer.store_weight_rows(0, _weights(out_features, 64, out_features))
    return layer


def test_repacking_keeps_the_bytes_and_the_product_and_drops_the_old_layout() -> None:
    layer = _loaded_int4_linear(32)
    stored = QuantizedTensor(layer.weight.detach().clone(), layer.weight_scale.clone())
    nbytes = layer.weight.nbytes + layer.weight_scale.nbytes
    x = torch.randn(3, 64)
    assert layer.repack_for_cpu()
    assert layer.weight.nbytes + layer.weight_scale.nbytes == nbytes  # no second copy kept
    _assert_bf16_close(layer(x), reference_matmul(x, stored, QuantScheme("int4", 32)))
    assert not layer.repack_for_cpu()  # once only
    with pytest.raises(RuntimeError, match="load before repacking"):
        layer.store_weight_rows(0, _weights(32, 64, 0))


def test_layers_the_kernel_cannot_take_keep_their_storage() -> None:
    odd = _loaded_int4_linear(37)
    assert not odd.repack_for_cpu() and odd.cpu_int4 is None
    int8 = Linear(64, 32)
    int8.quantize_storage(QuantScheme("int8"))
    assert not int8.repack_for_cpu()
    assert not Linear(64, 32).repack_for_cpu()


def _ops(run: object) -> set[str]:
    with torch.profiler.profile() as prof, torch.inference_mode():
        assert callable(run)
        run()
    return {event.key for event in prof.key_averages()}


@pytest.mark.usefixtures("cpu_packed_matmuls")
def test_int8_dispatch_uses_the_packed_kernel_for_a_decode_step_when_on() -> None:
    scheme = QuantScheme("int8")
    q = quantize(_weights(32, 64, 0), scheme)
    x = torch.randn(1, 64)
    assert "aten::_weight_int8pack_mm" in _ops(lambda: quantized_matmul(x, q, scheme))


@pytest.mark.usefixtures("cpu_reference_matmuls")
def test_int8_dispatch_keeps_the_exact_reference_when_off() -> None:
    scheme = QuantScheme("int8")
    q = quantize(_weights(32, 64, 0), scheme)
    x = torch.randn(1, 64)
    assert "aten::_weight_int8pack_mm" not in _ops(lambda: quantized_matmul(x, q, scheme))
    torch.testing.assert_close(quantized_matmul(x, q, scheme), reference_matmul(x, q, scheme))


@pytest.fixture(scope="module")
def model_128(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("packed-model"), hidden_size=128,
                            intermediate_size=256)  # fmt: skip


def _logits(loaded: LoadedModel) -> torch.Tensor:
    ids = list(range(3, 40))
    n = len(ids)
    meta = AttentionMetadata(slot_mapping=None, prefills=[PrefillSegment(0, n, n, None)])
    with torch.inference_mode():
        return loaded.model.compute_logits(loaded.model(torch.tensor(ids), torch.arange(n), meta))


def test_the_loader_repacks_int4_only_where_the_kernels_are_on(
    model_128: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llm_server.layers import cpu_quantized_matmul

    monkeypatch.setattr(cpu_quantized_matmul, "NATIVE_BF16", False)
    reference = load_model(model_128, "fp32", "cpu", quantization="int4")
    assert all(layer.cpu_int4 is None for layer in quantizable_linears(reference.model).values())
    monkeypatch.setattr(cpu_quantized_matmul, "NATIVE_BF16", True)
    packed = load_model(model_128, "fp32", "cpu", quantization="int4")
    layers = quantizable_linears(packed.model).values()
    assert all(layer.cpu_int4 is not None for layer in layers)
    # The whole model, through every layer: within bf16 rounding of the exact one.
    expected = _logits(reference)
    error = (_logits(packed) - expected).abs().max().item()
    assert error <= 4 * BF16 * expected.abs().max().item()
