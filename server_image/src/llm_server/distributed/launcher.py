"""Start tensor parallelism from the server process: it becomes rank 0 and spawns the rest.

Every rank loads only its shard of the weights; the ranks then agree on one KV block count
(the smallest that fits every rank), so one block table addresses every rank's cache.
"""

from __future__ import annotations

import dataclasses
import functools

import torch

from llm_server.distributed.channel import StepChannel
from llm_server.distributed.tp_runner import TensorParallelRunner
from llm_server.distributed.workers import WorkerProcesses
from llm_server.engine.config import EngineConfig
from llm_server.engine.engine import LLMEngine
from llm_server.engine.kv_sizing import kv_blocks_from_memory
from llm_server.models.loader import (
    LoadedModel,
    load_model,
    quantization_options,
    resolve_device,
)
from llm_server.parallel_state import (
    TensorParallel,
    destroy_tensor_parallel,
    free_port,
    init_tensor_parallel,
    rank_device,
    split_cpu_threads,
)
from llm_server.tensor_parallel_sizes import check_model_dir


def check_placement(config: EngineConfig) -> torch.device:
    """The base device, once the model's shapes and the GPUs present allow the size."""
    size = config.tensor_parallel_size
    error = check_model_dir(size, config.model)
    if error is not None:
        raise ValueError(error)
    device = resolve_device(config.device)
    if device.type == "cuda":
        needed, present = (device.index or 0) + size, torch.cuda.device_count()
        if needed > present:
            raise ValueError(
                f"--tensor-parallel-size {size} on {device} needs {needed} GPUs; {present} visible"
            )
    return device


def load_rank(
    config: EngineConfig, tp: TensorParallel, device: torch.device
) -> tuple[LoadedModel, int]:
    """This rank's shard of the model, and the KV block count every rank agreed on."""
    if device.type == "cpu":
        split_cpu_threads(tp.size)
    loaded = load_model(config.model, config.dtype, str(rank_device(device, tp.rank)), tp,
                        **quantization_options(config))  # fmt: skip
    blocks = config.num_kv_blocks or kv_blocks_from_memory(config, loaded)
    return loaded, StepChannel(tp).agree_min(blocks)


def launch_tensor_parallel(config: EngineConfig) -> LLMEngine:
    """Rank 0's engine, with ranks 1..N-1 running as child processes."""
    device = check_placement(config)  # before anything is spawned or loaded
    port = free_port()
    workers = WorkerProcesses.spawn(config, port)
    try:
        tp = init_tensor_parallel(0, config.tensor_parallel_size, port, device)
        loaded, num_blocks = load_rank(config, tp, device)
        runner = functools.partial(TensorParallelRunner, tp=tp, workers=workers)
        return LLMEngine(dataclasses.replace(config, num_kv_blocks=num_blocks), loaded, runner)
    except BaseException:
        workers.kill()
        destroy_tensor_parallel()
        raise
