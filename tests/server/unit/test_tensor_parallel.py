"""Tensor parallelism on CPU: sharded layers against the single-process model.

Model level: each family's two shards run in two threads whose all-reduce is a barrier and a
sum (fast, exercises every sharding rule). Engine level: a real 2-rank gloo group, this
process as rank 0 and `llm_server.distributed.worker` as rank 1, against the plain engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from thread_ranks import on_each_rank, thread_ranks

from llm_server.config import TINY_RANDOM, ConfigError, ServerConfig
from llm_server.distributed.tp_runner import TensorParallelRunner
from llm_server.engine.async_engine import AsyncEngine
from llm_server.engine.config import EngineConfig
from llm_server.engine.engine import LLMEngine
from llm_server.engine_factory import build_engine
from llm_server.layers.attention import AttentionMetadata, PrefillSegment
from llm_server.models.llama import DecoderAttention, LlamaForCausalLM
from llm_server.models.loader import load_model
from llm_server.sampling_params import SamplingParams
from llm_server.tensor_parallel_sizes import tensor_parallel_error

PROMPT = "Hello world, the quick brown fox jumps over the lazy dog 42 times. Why?"
FP32_ATOL = 1e-5


# ---- model level: two shards in two threads -------------------------------------------------


def _logits(model: LlamaForCausalLM, token_ids: list[int]) -> torch.Tensor:
    n = len(token_ids)
    meta = AttentionMetadata(slot_mapping=None, prefills=[PrefillSegment(0, n, n, None)])
    with torch.inference_mode():
        hidden = model(torch.tensor(token_ids), torch.arange(n), meta)
        return model.compute_logits(hidden)


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3"])
def test_sharded_model_logits_equal_the_full_model(
    family: str, tiny_model_factory: Callable[[str], Path]
) -> None:
    model_dir = tiny_model_factory(family)
    full = load_model(model_dir, "fp32", "cpu")
    shards = [load_model(model_dir, "fp32", "cpu", rank) for rank in thread_ranks(2)]
    prompt = full.tokenizer(PROMPT).input_ids

    attn = shards[1].model.model.layers[0].self_attn
    assert isinstance(attn, DecoderAttention)
    assert (attn.num_heads, attn.num_kv_heads) == (2, 1)  # of 4 and 2
    assert attn.o_proj.weight.shape[1] == full.model.spec.hidden_size // 2
    full_attn = full.model.model.layers[0].self_attn
    assert isinstance(full_attn, DecoderAttention)
    q_rows = attn.num_heads * attn.head_dim  # rank 1 holds the second half of q's rows
    assert torch.equal(
        attn.qkv_proj.weight[:q_rows], full_attn.qkv_proj.weight[q_rows : 2 * q_rows]
    )

    results = on_each_rank(2, lambda rank: _logits(shards[rank].model, prompt))
    expected = _logits(full.model, prompt)
    for logits in results:
        assert (logits - expected).abs().max().item() <= FP32_ATOL


# ---- sizes the model cannot divide ----------------------------------------------------------


def test_size_error_names_the_flag_and_the_sizes_that_work() -> None:
    shapes = {"attention heads": 32, "KV heads": 8, "intermediate size": 14336}
    assert tensor_parallel_error(4, shapes) is None
    message = tensor_parallel_error(3, shapes)
    assert message is not None
    assert message.startswith("--tensor-parallel-size 3:")
    assert "KV heads (8)" in message and "[1, 2, 4, 8]" in message


@pytest.mark.parametrize("size", [3, 4, 0])
def test_server_config_refuses_sizes_the_heads_cannot_divide(
    size: int, tiny_model_dir: Path
) -> None:
    for model in (str(tiny_model_dir), TINY_RANDOM):  # tiny: 4 heads, 2 KV heads
        with pytest.raises(ConfigError, match=f"--tensor-parallel-size {size}"):
            ServerConfig(model=model, tensor_parallel_size=size)
    assert (
        ServerConfig(model=str(tiny_model_dir), tensor_parallel_size=2)
        .engine_config(str(tiny_model_dir), cuda_available=False)
        .tensor_parallel_size
        == 2
    )


def test_engine_refuses_before_spawning_anything(tiny_model_dir: Path) -> None:
    config = EngineConfig(model=str(tiny_model_dir), device="cpu", tensor_parallel_size=4)
    with pytest.raises(ValueError, match="--tensor-parallel-size 4"):
        build_engine(config)


# ---- engine level: two gloo ranks in two processes ------------------------------------------


@pytest.fixture(scope="module")
def engines(tiny_model_dir: Path) -> Iterator[tuple[LLMEngine, LLMEngine]]:
    """(single-process, 2-rank) engines; small blocks and budget: chunked, mixed batches."""
    settings: dict[str, Any] = {
        "model": str(tiny_model_dir),
        "device": "cpu",
        "num_kv_blocks": 128,
        "block_size": 4,
        "max_num_batched_tokens": 24,
        "max_model_len": 256,
    }
    single = build_engine(EngineConfig(**settings))
    tp = build_engine(EngineConfig(**settings, tensor_parallel_size=2))
    try:
        yield single, tp
    finally:
        tp.close()


def test_two_rank_engine_shards_heads_and_kv_cache(engines: tuple[LLMEngine, LLMEngine]) -> None:
    single, tp = engines
    assert isinstance(tp.runner, TensorParallelRunner)
    assert tp.block_manager.num_blocks == single.block_manager.num_blocks  # one block table
    full_attn, shard_attn = (
        single.runner.model.attention_layers()[0],
        tp.runner.model.attention_layers()[0],
    )
    assert full_attn.k_cache is not None and shard_attn.k_cache is not None
    assert shard_attn.k_cache.shape[2] * 2 == full_attn.k_cache.shape[2]  # half the KV heads


def test_two_rank_logits_equal_single_process(engines: tuple[LLMEngine, LLMEngine]) -> None:
    single, tp = engines
    prompt = single.tokenizer(PROMPT).input_ids
    assert (tp.runner.score(prompt) - single.runner.score(prompt)).abs().max().item() <= FP32_ATOL


def test_two_rank_generation_equals_single_process(engines: tuple[LLMEngine, LLMEngine]) -> None:
    single, tp = engines
    prompts = {f"r{i}": single.tokenizer(f"{PROMPT} {i}" * (1 + i)).input_ids for i in range(4)}
    greedy = SamplingParams(max_tokens=20, temperature=0.0, ignore_eos=True, logprobs=2)
    seeded = SamplingParams(max_tokens=20, temperature=0.8, top_p=0.9, seed=7, ignore_eos=True)
    params = {rid: greedy if i % 2 == 0 else seeded for i, rid in enumerate(prompts)}
    expected, actual = single.generate(prompts, params), tp.generate(prompts, params)
    for rid in prompts:
        assert [e.token_id for e in actual[rid]] == [e.token_id for e in expected[rid]]
        for ours, theirs in zip(actual[rid], expected[rid], strict=True):
            if theirs.logprob is not None:
                assert ours.logprob == pytest.approx(theirs.logprob, abs=1e-4)
    assert tp.block_manager.usage == single.block_manager.usage


# ---- a failure reported by the runner ends the engine ---------------------------------------


async def test_a_runner_failure_fails_the_async_engine(
    make_engine: Callable[..., LLMEngine],
) -> None:
    sync_engine = make_engine()
    listeners: list[Callable[[BaseException], None]] = []
    sync_engine.runner.watch = listeners.append  # type: ignore[method-assign,assignment]
    engine = AsyncEngine(sync_engine)
    await engine.start()
    try:
        long = SamplingParams(max_tokens=400, temperature=0.0, ignore_eos=True)
        stream = engine.submit("r", [1, 2, 3], long)
        await anext(stream)
        listeners[0](RuntimeError("tensor-parallel rank 1 exited"))  # as the watcher thread does
        error = await asyncio.wait_for(engine.wait_failure(), 10)
        assert "rank 1" in str(error) and engine.failed
        with pytest.raises(RuntimeError, match="rank 1"):
            async for _ in stream:
                pass
    finally:
        await engine.shutdown()
