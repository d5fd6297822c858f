"""How many KV cache blocks a rank can hold: bytes per block and the memory budget.

One owner for the sizing both the single-process engine and every tensor-parallel rank use.
"""

from __future__ import annotations

import torch

from llm_server.engine.config import EngineConfig
from llm_server.models.llama import LlamaForCausalLM
from llm_server.models.loader import LoadedModel

CPU_KV_CACHE_BYTES = 1 << 30
GPU_KV_CACHE_FRACTION = 0.9  # of the memory still free once the weights are loaded


def kv_blocks_from_memory(config: EngineConfig, loaded: LoadedModel) -> int:
    """KV blocks that fit this rank's memory budget once its weights are loaded."""
    budget = config.kv_cache_memory_bytes
    if budget is None:
        if loaded.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(loaded.device)
            budget = int(free * GPU_KV_CACHE_FRACTION)
        else:
            budget = CPU_KV_CACHE_BYTES
    return max(1, budget // kv_block_bytes(loaded.model, config.block_size, loaded.dtype))


def kv_block_bytes(model: LlamaForCausalLM, block_size: int, dtype: torch.dtype) -> int:
    """Bytes of one KV block on this rank (its share of the KV heads under tensor parallelism)."""
    per_token = sum(
        2 * a.num_kv_heads * a.head_dim * (a.kv_cache_dtype or dtype).itemsize
        for a in model.attention_layers()
    )  # kv_cache_dtype: fp8 when the loader was asked for an fp8 cache
    return per_token * block_size
