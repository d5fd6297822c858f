"""The tiny model fixture: Hugging Face layout, deterministic, loadable like a checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

from llm_server.sampling_params import SamplingParams
from llm_server.tiny_model import build_tiny_model, ensure_tiny_model

SMALL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "vocab_size": 300}


def test_layout_chat_template_and_tokenizer(tiny_model_dir: Path) -> None:
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ):
        assert (tiny_model_dir / name).is_file(), name
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hello world"}], add_generation_prompt=True, tokenize=False
    )
    assert text.endswith("<|im_start|>assistant\n") and "hello world" in text
    ids = tokenizer("The quick brown fox, 42 times!").input_ids
    assert tokenizer.decode(ids) == "The quick brown fox, 42 times!"
    assert tokenizer.eos_token == "<|im_end|>"


def test_build_is_deterministic_per_seed(tmp_path: Path) -> None:
    first = load_file(build_tiny_model(tmp_path / "a", seed=3, **SMALL) / "model.safetensors")
    second = load_file(build_tiny_model(tmp_path / "b", seed=3, **SMALL) / "model.safetensors")
    other = load_file(build_tiny_model(tmp_path / "c", seed=4, **SMALL) / "model.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert not torch.equal(first["lm_head.weight"], other["lm_head.weight"])


def test_ensure_tiny_model_builds_once(tmp_path: Path) -> None:
    path = ensure_tiny_model(tmp_path)
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert ensure_tiny_model(tmp_path) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no scratch left behind


def test_low_precision_dtypes_generate(make_engine: Callable[..., object]) -> None:
    for dtype in ("bf16", "fp16"):
        engine = make_engine(dtype=dtype)
        params = SamplingParams(max_tokens=5, temperature=0.0, ignore_eos=True)
        events = engine.generate({"a": [5, 6, 7, 8]}, params)["a"]  # type: ignore[attr-defined]
        assert len(events) == 5 and events[-1].finish_reason == "length"
