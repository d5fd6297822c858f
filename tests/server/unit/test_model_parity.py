"""Our model code against transformers on the same weights (fp32, CPU)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from llm_server.engine.config import EngineConfig
from llm_server.engine_factory import build_engine
from llm_server.layers.rotary import RopeSpec, inverse_frequencies
from llm_server.sampling_params import SamplingParams

PROMPT = "Hello world, the quick brown fox jumps over the lazy dog 42 times. Why?"


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3"])
def test_logits_and_greedy_match_transformers(
    family: str, tiny_model_factory: Callable[[str], Path]
) -> None:
    model_dir = tiny_model_factory(family)
    engine = build_engine(EngineConfig(model=str(model_dir), device="cpu"))
    reference = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    prompt = engine.tokenizer(PROMPT).input_ids

    ours = engine.runner.score(prompt)
    with torch.no_grad():
        theirs = reference(torch.tensor([prompt])).logits[0]
    assert (ours - theirs).abs().max().item() <= 1e-4

    with torch.no_grad():
        expected = reference.generate(
            torch.tensor([prompt]), max_new_tokens=24, do_sample=False, eos_token_id=None
        )[0, len(prompt) :].tolist()
    params = SamplingParams(max_tokens=24, temperature=0.0, ignore_eos=True)
    events = engine.generate({"r": prompt}, params)["r"]
    assert [e.token_id for e in events] == expected


def test_llama3_rope_scaling_matches_transformers() -> None:
    config = LlamaConfig(
        hidden_size=256,
        num_attention_heads=4,
        max_position_embeddings=4096,
        rope_theta=500000.0,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 256,
        },
    )
    spec = RopeSpec.from_hf_config(config, head_dim=64)
    assert spec.rope_type == "llama3"
    expected, _ = ROPE_INIT_FUNCTIONS["llama3"](config, torch.device("cpu"))
    assert torch.allclose(inverse_frequencies(spec), expected, rtol=1e-6, atol=0)
