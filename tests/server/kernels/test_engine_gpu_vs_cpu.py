"""On a GPU: the engine's greedy output against the same engine on CPU (its torch reference
paths), on the real SmolLM2-135M (fp32, int8, int4 weights) and on random weights of
TinyLlama-1.1B's shape (22 layers, GQA 8:1, 32k vocabulary). Skipped without CUDA.

Both sides compute in fp32 (the Triton kernels' dots are IEEE fp32; cuBLAS runs without
TF32), so they differ in summation order alone. A greedy path may then part only where the
CPU's two best tokens were nearly tied. So: while the paths agree, every chosen token's
logprob agrees within TOLERANCE; where they part, the CPU's top-2 gap is below 2 x TOLERANCE.
A wrong kernel moves logprobs by far more (tenths, not thousandths).

LLM_GPU_TEST_DEVICE=cpu runs the GPU side on CPU too: it rehearses this file's plumbing on a
machine without a GPU (benchmarks/gpu_suite.sh --smoke); the comparison is then trivial.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from smollm2_file import smollm2_gguf

from llm_server.engine.config import EngineConfig
from llm_server.engine.request import TokenEvent
from llm_server.engine_factory import build_engine
from llm_server.random_checkpoint import write_random_llama
from llm_server.sampling_params import SamplingParams

GPU = os.environ.get("LLM_GPU_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(
    GPU == "cuda" and not torch.cuda.is_available(), reason="needs CUDA"
)

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Kubernetes schedules pods onto nodes by",
]
TOKENS = 24
TOLERANCE = 2e-3  # nats: fp32 summation order over 22-30 layers stays well inside it


def _greedy(model: Path, device: str, quantization: str) -> dict[str, list[TokenEvent]]:
    config = EngineConfig(model=str(model), device=device, dtype="fp32", num_kv_blocks=64,
                          max_model_len=256, quantization=quantization,
                          cuda_graphs=device == "cuda")  # fmt: skip
    engine = build_engine(config)
    prompts = {str(i): engine.tokenizer(p).input_ids for i, p in enumerate(PROMPTS)}
    params = SamplingParams(max_tokens=TOKENS, temperature=0.0, ignore_eos=True, logprobs=2)
    return engine.generate(prompts, params)


def _assert_same_greedy_path(cpu: list[TokenEvent], gpu: list[TokenEvent]) -> int:
    """The steps both paths share; fails unless they agree to TOLERANCE up to a near-tie."""
    assert len(cpu) == len(gpu) == TOKENS
    for step, (c, g) in enumerate(zip(cpu, gpu, strict=True)):
        assert c.logprob is not None and g.logprob is not None
        if c.token_id != g.token_id:
            (_, best), (_, second) = c.top_logprobs[:2]
            assert best - second < 2 * TOLERANCE, (
                f"step {step}: GPU chose {g.token_id}, CPU {c.token_id} by a clear "
                f"{best - second:.4f} nats"
            )
            return step
        assert abs(c.logprob - g.logprob) < TOLERANCE, (
            f"step {step}: logprob {g.logprob:.5f} on GPU, {c.logprob:.5f} on CPU"
        )
    return TOKENS


def _compare(model: Path, quantization: str) -> None:
    cpu, gpu = _greedy(model, "cpu", quantization), _greedy(model, GPU, quantization)
    shared = [_assert_same_greedy_path(cpu[r], gpu[r]) for r in cpu]
    # Near-ties are rare: most prompts must run their whole length on one path.
    assert sum(s == TOKENS for s in shared) >= len(PROMPTS) - 1, shared


@pytest.mark.parametrize("quantization", ["none", "int8", "int4"])
def test_smollm2_greedy_on_gpu_is_the_cpu_path(
    quantization: str, cpu_reference_matmuls: None
) -> None:
    _compare(smollm2_gguf(), quantization)


@pytest.fixture(scope="module")
def tinyllama_shaped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    device = "cuda" if torch.cuda.is_available() else "cpu"  # a GPU draws 1.1B values at once
    out = tmp_path_factory.mktemp("tinyllama") / "model"
    return write_random_llama(out, "tinyllama-1.1b", device=device)


def test_tinyllama_shaped_greedy_on_gpu_is_the_cpu_path(tinyllama_shaped: Path) -> None:
    _compare(tinyllama_shaped, "none")
