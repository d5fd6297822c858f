"""On a GPU: the whole engine with quantized weights (Triton matmuls) and the paged decode
kernel against the same engine on CPU (torch references). Skipped without CUDA."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from llm_server.engine.config import EngineConfig
from llm_server.engine_factory import build_engine
from llm_server.sampling_params import SamplingParams
from llm_server.tiny_model import build_tiny_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

PROMPT = "the scheduler batches every request in the queue"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("gpu-quant"), hidden_size=128,
                            intermediate_size=256)  # fmt: skip


def _run(model_dir: Path, device: str, quantization: str, kv: str = "auto") -> list[int]:
    config = EngineConfig(model=str(model_dir), device=device, dtype="fp32", num_kv_blocks=64,
                          quantization=quantization, kv_cache_dtype=kv)  # fmt: skip
    engine = build_engine(config)
    prompt = engine.tokenizer(PROMPT).input_ids
    params = SamplingParams(max_tokens=16, temperature=0.0, ignore_eos=True)
    return [e.token_id for e in engine.generate({"r": prompt}, params)["r"]]


@pytest.mark.parametrize("quantization", ["none", "int8", "int4"])
def test_gpu_engine_generates_what_the_cpu_engine_does(
    model_dir: Path, quantization: str, cpu_reference_matmuls: None
) -> None:
    # fp32 both sides (the CPU's packed bf16 kernels off: a GPU machine's CPU may have them):
    # the kernels differ from the references in summation order only, so a greedy path agrees
    # unless two logits tie within ~1e-5; the first 8 tokens must match.
    gpu, cpu = _run(model_dir, "cuda", quantization), _run(model_dir, "cpu", quantization)
    assert gpu[:8] == cpu[:8]


def test_fp8_weights_and_kv_cache_run_on_ada_or_hopper(model_dir: Path) -> None:
    if torch.cuda.get_device_capability() < (8, 9):
        with pytest.raises(ValueError, match="fp8 needs a GPU"):
            _run(model_dir, "cuda", "fp8")
        return
    tokens = _run(model_dir, "cuda", "fp8", kv="fp8")
    assert len(tokens) == 16
