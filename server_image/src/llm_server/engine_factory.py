"""Builds the engine a config asks for: one process, or rank 0 of a tensor-parallel group.

It sits above both `engine` and `distributed`, so neither imports the other's construction.
"""

from __future__ import annotations

from llm_server.distributed.launcher import launch_tensor_parallel
from llm_server.engine.config import EngineConfig
from llm_server.engine.cuda_graphs import capture_decode_graphs
from llm_server.engine.engine import LLMEngine
from llm_server.models.loader import load_model, quantization_options


def build_engine(config: EngineConfig) -> LLMEngine:
    if config.tensor_parallel_size > 1:  # spawns the other ranks; this process is rank 0
        return launch_tensor_parallel(config)
    loaded = load_model(config.model, config.dtype, config.device, **quantization_options(config))
    engine = LLMEngine(config, loaded)
    if config.cuda_graphs:  # one rank only: the tensor-parallel path above never captures
        engine.runner.decode_graphs = capture_decode_graphs(
            engine.runner.model, config.max_num_seqs, engine.max_model_len, config.block_size,
            engine.device,
        )  # fmt: skip
    return engine
