"""The random-weight Llama of a real model's shape (GPU tests and benchmarks load it)."""

from __future__ import annotations

from pathlib import Path

from llm_server.engine.config import EngineConfig
from llm_server.engine_factory import build_engine
from llm_server.models.loader import weight_bytes
from llm_server.random_checkpoint import LLAMA_SHAPES, parameter_count, write_random_llama
from llm_server.sampling_params import SamplingParams


def test_it_loads_through_the_server_with_the_shape_it_names(tmp_path: Path) -> None:
    model = write_random_llama(tmp_path / "m", "smoke")
    engine = build_engine(EngineConfig(model=str(model), device="cpu", dtype="bf16",
                                       num_kv_blocks=16))  # fmt: skip
    assert weight_bytes(engine.runner.model) == 2 * parameter_count(LLAMA_SHAPES["smoke"])
    events = engine.generate({"r": [5, 6, 7]}, SamplingParams(max_tokens=4, ignore_eos=True))
    assert len(events["r"]) == 4


def test_parameter_count_is_the_published_size_of_the_shapes_it_copies() -> None:
    assert round(parameter_count(LLAMA_SHAPES["tinyllama-1.1b"]) / 1e9, 2) == 1.10
    assert round(parameter_count(LLAMA_SHAPES["llama-3-8b"]) / 1e9, 2) == 8.03
