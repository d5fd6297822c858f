"""Quantized models on CPU: the quantized layers compute exactly the dequantized model (on the
fp32 reference path; kernels/test_cpu_quantized_kernels.py tests the packed bf16 ones), the
resident weights shrink by the table's factor, pre-quantized directories load identically,
tensor parallelism shards quantized weights, fp8 KV caches work and fp8 weights are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from thread_ranks import on_each_rank, thread_ranks

from llm_server.config import ConfigError, ServerConfig
from llm_server.engine.config import EngineConfig
from llm_server.engine.engine import LLMEngine
from llm_server.engine.kv_sizing import kv_block_bytes
from llm_server.engine_factory import build_engine
from llm_server.layers.attention import AttentionMetadata, PagedAttention, PrefillSegment
from llm_server.layers.linear import Linear
from llm_server.models.llama import LlamaForCausalLM
from llm_server.models.loader import LoadedModel, load_model, quantizable_linears, weight_bytes
from llm_server.quantization.checkpoint import save_quantized
from llm_server.quantization.quantize import QuantizedTensor, dequantize
from llm_server.quantization.scheme import CONFIG_FILE, QuantizationError, QuantScheme
from llm_server.sampling_params import SamplingParams
from llm_server.tiny_model import build_tiny_model

PROMPT = "the quick brown fox jumps over the lazy dog while the server streams tokens"
SCHEMES = [("int8", None), ("int4", 32), ("int4", 64), ("int4", 128)]
EXACT_ATOL = 2e-4  # fp32: the same arithmetic up to summation order


@pytest.fixture(scope="module")
def model_128(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Hidden 128, so every group size divides every projection's input."""
    return build_tiny_model(tmp_path_factory.mktemp("quant-model"), hidden_size=128,
                            intermediate_size=256)  # fmt: skip


def _logits(loaded: LoadedModel, ids: list[int]) -> torch.Tensor:
    n = len(ids)
    meta = AttentionMetadata(slot_mapping=None, prefills=[PrefillSegment(0, n, n, None)])
    with torch.inference_mode():
        return loaded.model.compute_logits(loaded.model(torch.tensor(ids), torch.arange(n), meta))


def _dequantized_copy(model_dir: Path, quantized: LoadedModel) -> LoadedModel:
    """The fp32 model with every projection replaced by its dequantized weight."""
    plain = load_model(model_dir, "fp32", "cpu")
    layers = quantizable_linears(quantized.model)
    for name, layer in quantizable_linears(plain.model).items():
        source = layers[name]
        assert source.quant is not None
        weight = dequantize(QuantizedTensor(source.weight, source.weight_scale), source.quant,
                            torch.float32)  # fmt: skip
        with torch.no_grad():
            layer.weight.copy_(weight)
    return plain


@pytest.mark.usefixtures("cpu_reference_matmuls")
@pytest.mark.parametrize(("method", "group"), SCHEMES)
def test_quantized_model_is_exactly_its_dequantized_model(
    model_128: Path, method: str, group: int | None
) -> None:
    quantized = load_model(model_128, "fp32", "cpu", quantization=method, quant_group_size=group)
    assert quantized.quantization == QuantScheme(method, group)
    ids = quantized.tokenizer(PROMPT).input_ids
    expected = _logits(_dequantized_copy(model_128, quantized), ids)
    assert (_logits(quantized, ids) - expected).abs().max().item() <= EXACT_ATOL
    full = _logits(load_model(model_128, "fp32", "cpu"), ids)
    assert not torch.equal(_logits(quantized, ids), full)  # it really is quantized


@pytest.mark.parametrize(("method", "group"), SCHEMES)
def test_resident_weight_bytes_drop_by_the_table_factor(
    model_128: Path, method: str, group: int | None
) -> None:
    full = load_model(model_128, "fp32", "cpu")
    quantized = load_model(model_128, "fp32", "cpu", quantization=method, quant_group_size=group)
    scheme = QuantScheme(method, group)
    layers = quantizable_linears(quantized.model).values()
    parameters = sum(layer.in_features * layer.out_features for layer in layers)
    stored = sum(layer.weight.nbytes + layer.weight_scale.nbytes for layer in layers)
    channel_scales = sum(4 * layer.out_features for layer in layers) if method == "int8" else 0
    assert stored == parameters * scheme.bytes_per_parameter() + channel_scales
    saved = parameters * (4 - scheme.bytes_per_parameter()) - channel_scales
    assert weight_bytes(full.model) - weight_bytes(quantized.model) == saved
    assert quantized.model.lm_head.quant is None  # lm_head and the embedding stay fp32
    assert quantized.model.model.embed_tokens.weight.dtype == torch.float32


@pytest.mark.parametrize(("method", "group"), [("int8", None), ("int4", 64)])
def test_pre_quantized_directory_loads_identically_and_is_detected(
    model_128: Path, tmp_path: Path, method: str, group: int | None
) -> None:
    scheme = QuantScheme(method, group)
    sizes = save_quantized(model_128, tmp_path / "q", scheme)
    assert sizes["bytes_after"] < sizes["bytes_before"]
    assert (tmp_path / "q" / CONFIG_FILE).is_file() and (
        tmp_path / "q" / "tokenizer.json"
    ).is_file()
    stored = load_model(tmp_path / "q", "fp32", "cpu")  # no --quantization: detected
    live = load_model(model_128, "fp32", "cpu", quantization=method, quant_group_size=group)
    assert stored.quantization == scheme
    ids = live.tokenizer(PROMPT).input_ids
    assert torch.equal(_logits(stored, ids), _logits(live, ids))
    config = ServerConfig(model=str(tmp_path / "q"))  # the server's flags see it too
    assert (config.quantization, config.quant_group_size) == (method, scheme.group_size)
    with pytest.raises(ConfigError, match=f"pre-quantized {scheme.label}"):
        ServerConfig(model=str(tmp_path / "q"), quantization="fp8" if method != "fp8" else "int8")
    with pytest.raises(FileExistsError):
        save_quantized(model_128, tmp_path / "q", scheme)


def test_refusals_are_clear(tiny_model_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"fp8 needs a GPU .* this device is a CPU"):
        load_model(tiny_model_dir, "fp32", "cpu", quantization="fp8")
    with pytest.raises(ConfigError, match="--quantization fp8 needs a GPU"):
        ServerConfig(model=str(tiny_model_dir), quantization="fp8", device="cpu")
    with pytest.raises(
        QuantizationError, match=r"qkv_proj: int4 group size 128 .* use one of \[32, 64\]"
    ):  # hidden size 64
        load_model(tiny_model_dir, "fp32", "cpu", quantization="int4", quant_group_size=128)
    with pytest.raises(ConfigError, match="--quant-group-size applies to int4"):
        ServerConfig(model=str(tiny_model_dir), quantization="int8", quant_group_size=64)
    with pytest.raises(ConfigError, match="--quant-group-size 48"):
        ServerConfig(model=str(tiny_model_dir), quantization="int4", quant_group_size=48)


# ---- tensor parallelism: two shards in two threads ----------------------------------------


@pytest.mark.usefixtures("cpu_reference_matmuls")
@pytest.mark.parametrize(
    ("method", "group", "atol"), [("int4", 32, EXACT_ATOL), ("int8", None, 0.1)]
)
def test_tensor_parallel_shards_of_a_quantized_model(
    model_128: Path, method: str, group: int | None, atol: float
) -> None:
    """int4 shards split at group boundaries: exactly the single-process quantized model.
    int8 row-parallel shards scale their own columns: close to it, not equal."""
    shards = [load_model(model_128, "fp32", "cpu", rank, quantization=method,
                         quant_group_size=group) for rank in thread_ranks(2)]  # fmt: skip
    single = load_model(model_128, "fp32", "cpu", quantization=method, quant_group_size=group)
    ids = single.tokenizer(PROMPT).input_ids
    results = on_each_rank(2, lambda rank: _logits(shards[rank], ids))
    expected = _logits(single, ids)
    for logits in results:
        assert (logits - expected).abs().max().item() <= atol


# ---- fp8 KV cache ----------------------------------------------------------------------------


def test_fp8_kv_cache_stores_fp8_and_attends_over_the_rounded_values() -> None:
    layer = PagedAttention(num_heads=4, num_kv_heads=2, head_dim=16)
    shape = (8, 4, 2, 16)  # blocks, block size, kv heads, head dim
    layer.k_cache = torch.zeros(shape, dtype=torch.float8_e4m3fn)
    layer.v_cache = torch.zeros(shape, dtype=torch.float8_e4m3fn)
    k, v, q = torch.randn(10, 2, 16), torch.randn(10, 2, 16), torch.randn(10, 4, 16)
    slots = torch.tensor([4, 5, 6, 7, 16, 17, 18, 19, 8, 9])  # blocks 1, 4, 2
    table = torch.tensor([1, 4, 2])
    prefill = AttentionMetadata(slot_mapping=slots, prefills=[PrefillSegment(0, 10, 10, None)])
    layer(q, k, v, prefill)
    assert torch.equal(
        layer.k_cache.view(-1, 2, 16)[slots].float(), k.to(torch.float8_e4m3fn).float()
    )
    decode = AttentionMetadata(
        slot_mapping=None,
        num_decode_tokens=1,
        decode_block_tables=table[None],
        decode_context_lens=torch.tensor([10]),
    )
    out = layer(q[-1:], k[:0], v[:0], decode)
    rounded_k, rounded_v = (t.to(torch.float8_e4m3fn).float() for t in (k, v))
    expected = torch.nn.functional.scaled_dot_product_attention(
        q[-1].view(1, 4, 1, 16), rounded_k.transpose(0, 1)[None], rounded_v.transpose(0, 1)[None],
        scale=16**-0.5, enable_gqa=True,
    )  # fmt: skip
    assert (out.view(4, 16) - expected.view(4, 16)).abs().max().item() <= 1e-5


def test_engine_generates_with_int4_weights_and_an_fp8_kv_cache(model_128: Path) -> None:
    def engine(kv: str) -> LLMEngine:
        return build_engine(EngineConfig(
            model=str(model_128), device="cpu", num_kv_blocks=64, max_model_len=256,
            quantization="int4", quant_group_size=64, kv_cache_dtype=kv,
        ))  # fmt: skip

    fp8, fp32 = engine("fp8"), engine("auto")
    model = fp8.runner.model
    assert isinstance(model, LlamaForCausalLM)
    assert model.attention_layers()[0].k_cache.dtype == torch.float8_e4m3fn  # type: ignore[union-attr]
    assert 4 * kv_block_bytes(model, 16, torch.float32) == kv_block_bytes(
        fp32.runner.model, 16, torch.float32
    )
    params = SamplingParams(max_tokens=24, temperature=0.0, ignore_eos=True)
    prompt = fp8.tokenizer(PROMPT).input_ids
    outputs = [[t.token_id for t in e.generate({"r": prompt}, params)["r"]] for e in (fp8, fp32)]
    assert len(outputs[0]) == 24
    # fp8 K/V round each value to 1/16: the first tokens agree, later ones may drift apart.
    assert outputs[0][:4] == outputs[1][:4]


def test_quantized_linears_are_the_projections_only(model_128: Path) -> None:
    loaded = load_model(model_128, "fp32", "cpu", quantization="int8")
    names = set(quantizable_linears(loaded.model))
    assert len(names) == 4 * loaded.model.spec.num_layers
    assert all(n.rsplit(".", 1)[1] in ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")
               for n in names)  # fmt: skip
    assert isinstance(loaded.model.lm_head, Linear) and loaded.model.lm_head.quant is None


def test_kv_cache_dtype_flag(tiny_model_dir: Path) -> None:
    def kv(value: str) -> str:
        config = ServerConfig(model=str(tiny_model_dir), kv_cache_dtype=value)
        return config.engine_config(str(tiny_model_dir), cuda_available=False).kv_cache_dtype

    assert [kv(v) for v in ("auto", "fp8", "FP8_E4M3", "float16", "bf16")] == [
        "auto", "fp8", "fp8", "fp16", "bf16",
    ]  # fmt: skip
    with pytest.raises(ConfigError, match="--kv-cache-dtype int8"):
        kv("int8")
