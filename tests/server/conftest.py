"""Shared fixtures for server tests: tiny random-weight models saved in Hugging Face format."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llm_server.engine.config import EngineConfig
from llm_server.engine.engine import LLMEngine
from llm_server.engine_factory import build_engine
from llm_server.layers import cpu_quantized_matmul
from llm_server.tiny_model import build_tiny_model


@pytest.fixture(scope="session")
def tiny_model_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[str], Path]:
    """family -> directory of a tiny model of that family, built once per session."""
    built: dict[str, Path] = {}

    def get(family: str = "llama") -> Path:
        if family not in built:
            out = tmp_path_factory.mktemp(f"tiny-{family}")
            built[family] = build_tiny_model(out, family=family, seed=0)
        return built[family]

    return get


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_model_factory: Callable[[str], Path]) -> Path:
    """A tiny Llama-family model (vocab 512, hidden 64, 2 layers) with a chat template."""
    return tiny_model_factory("llama")


@pytest.fixture
def make_engine(tiny_model_dir: Path) -> Callable[..., LLMEngine]:
    """Build an LLMEngine on the tiny Llama model with EngineConfig overrides (fp32, CPU)."""

    def make(**overrides: Any) -> LLMEngine:
        settings: dict[str, Any] = {
            "model": str(tiny_model_dir),
            "device": "cpu",
            "num_kv_blocks": 256,
            "max_model_len": 512,
        }
        settings.update(overrides)
        return build_engine(EngineConfig(**settings))

    return make


@pytest.fixture
def cpu_reference_matmuls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Quantized layers on CPU take the fp32 dequantize + matmul references, as on a CPU
    without native bf16: exact to summation order (load models after requesting this)."""
    monkeypatch.setattr(cpu_quantized_matmul, "NATIVE_BF16", False)


@pytest.fixture
def cpu_packed_matmuls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Quantized layers on CPU take torch's packed bf16 kernels, as on a CPU with native bf16
    (they run on any CPU, emulated where it has none)."""
    monkeypatch.setattr(cpu_quantized_matmul, "NATIVE_BF16", True)
