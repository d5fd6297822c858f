"""Prefix caching: chained block hashes, reuse with reference counts, LRU eviction, and the
engine's outputs, counters and refcounts with the cache on and off."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from llm_server.engine.engine import LLMEngine
from llm_server.engine.kv_cache import ROOT_HASH, BlockManager, block_hash
from llm_server.engine.request import EngineStats, TokenEvent
from llm_server.metrics import ServerMetrics
from llm_server.sampling_params import SamplingParams

EngineFactory = Callable[..., LLMEngine]
BLOCK = 4


def chain(tokens: list[int], block_size: int = BLOCK) -> list[bytes]:
    hashes: list[bytes] = []
    for start in range(0, len(tokens) - block_size + 1, block_size):
        parent = hashes[-1] if hashes else ROOT_HASH
        hashes.append(block_hash(parent, tokens[start : start + block_size]))
    return hashes


def test_hash_is_chained_over_the_prefix() -> None:
    a = chain([1, 2, 3, 4, 5, 6, 7, 8])
    b = chain([9, 2, 3, 4, 5, 6, 7, 8])
    assert a[0] != b[0] and a[1] != b[1]  # same second block, different prefix
    assert chain([1, 2, 3, 4, 5, 6, 7, 8]) == a
    assert block_hash(ROOT_HASH, [1, 2]) != block_hash(ROOT_HASH, [2, 1])


def test_registered_blocks_are_shared_and_survive_their_owner() -> None:
    blocks = BlockManager(num_blocks=6, block_size=BLOCK)
    tokens = list(range(10, 22))  # 3 full blocks
    hashes = chain(tokens)
    first: list[int] = []
    blocks.allocate(first, len(tokens))
    blocks.register(first, hashes, 0)
    assert blocks.find_cached(hashes) == first
    second: list[int] = []
    assert blocks.can_allocate(second, 14, reuse=first[:2])
    blocks.allocate(second, 14, reuse=first[:2])  # 2 shared + 2 fresh blocks
    assert second[:2] == first[:2] and len(second) == 4
    assert [blocks.ref_counts[b] for b in first] == [2, 2, 1]
    kept = list(first)
    blocks.free(first)
    assert blocks.num_free_blocks == 6 - 4  # shared blocks still owned by `second`
    blocks.free(second)
    assert blocks.num_free_blocks == 6 and blocks.usage == 0.0
    # Freed blocks keep their hashes: a later request still finds the whole prefix.
    assert blocks.find_cached(hashes) == kept
    third: list[int] = []
    blocks.allocate(third, 13, reuse=kept)
    assert third[:3] == kept and blocks.num_free_blocks == 2


def test_uncached_free_blocks_go_first_then_lru_eviction() -> None:
    blocks = BlockManager(num_blocks=4, block_size=BLOCK)
    old, new = chain([1] * 4), chain([2] * 4)
    table_old: list[int] = []
    blocks.allocate(table_old, 4)
    blocks.register(table_old, old, 0)
    blocks.free(table_old)
    table_new: list[int] = []
    blocks.allocate(table_new, 4)
    blocks.register(table_new, new, 0)
    blocks.free(table_new)
    assert blocks.num_cached_blocks == 2
    scratch: list[int] = []
    blocks.allocate(scratch, 8)  # two never-hashed blocks: no eviction yet
    assert blocks.num_evictions_total == 0 and blocks.num_cached_blocks == 2
    blocks.allocate(scratch, 12)  # evicts the least recently freed cached block
    assert blocks.num_evictions_total == 1
    assert blocks.find_cached(old) == [] and blocks.find_cached(new) != []
    blocks.free(scratch)
    blocks.reset_prefix_cache()
    assert blocks.num_cached_blocks == 0 and blocks.num_free_blocks == 4


def test_reusing_a_free_cached_block_counts_against_capacity() -> None:
    blocks = BlockManager(num_blocks=2, block_size=BLOCK)
    hashes = chain([5] * 4)
    table: list[int] = []
    blocks.allocate(table, 4)
    blocks.register(table, hashes, 0)
    blocks.free(table)
    hit = blocks.find_cached(hashes)
    assert blocks.can_allocate([], 8, reuse=hit)  # the cached block + one fresh one
    assert not blocks.can_allocate([], 12, reuse=hit)


def test_duplicate_content_keeps_the_first_block_and_disabled_cache_finds_nothing() -> None:
    blocks = BlockManager(num_blocks=4, block_size=BLOCK)
    hashes = chain([7] * 4)
    a: list[int] = []
    b: list[int] = []
    blocks.allocate(a, 4)
    blocks.allocate(b, 4)
    blocks.register(a, hashes, 0)
    blocks.register(b, hashes, 0)
    assert blocks.find_cached(hashes) == a
    off = BlockManager(num_blocks=4, block_size=BLOCK, enable_prefix_caching=False)
    table: list[int] = []
    off.allocate(table, 4)
    off.register(table, hashes, 0)
    assert off.find_cached(hashes) == [] and off.num_cached_blocks == 0


# ---- the engine -------------------------------------------------------------------------


def shared_prefix_prompts(count: int, prefix_len: int, seed: int) -> dict[str, list[int]]:
    """One common prefix, then suffixes of varied length (some block-aligned prompts)."""
    generator = torch.Generator().manual_seed(seed)
    prefix = torch.randint(3, 500, (prefix_len,), generator=generator).tolist()
    lengths = [0, 1, 3, 4, 8, 5, 7, 2][:count]
    return {
        f"r{i}": prefix + torch.randint(3, 500, (n,), generator=generator).tolist()
        for i, n in enumerate(lengths)
    }


def run_in_order(engine: LLMEngine, requests: dict[str, list[int]], params: SamplingParams):
    """One request at a time, so each later one can reuse what earlier ones computed."""
    return {rid: engine.generate({rid: p}, params)[rid] for rid, p in requests.items()}


def token_ids(results: dict[str, list[TokenEvent]]) -> dict[str, list[int]]:
    return {rid: [e.token_id for e in events] for rid, events in results.items()}


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(max_tokens=10, temperature=0.0, ignore_eos=True),
        SamplingParams(max_tokens=10, temperature=0.9, top_p=0.9, seed=42, ignore_eos=True),
    ],
    ids=["greedy", "seeded"],
)
def test_outputs_identical_with_and_without_prefix_cache(
    make_engine: EngineFactory, params: SamplingParams
) -> None:
    requests = shared_prefix_prompts(8, prefix_len=24, seed=0)
    off = make_engine(block_size=BLOCK, enable_prefix_caching=False)
    on = make_engine(block_size=BLOCK)
    expected = token_ids(run_in_order(off, requests, params))
    got = run_in_order(on, requests, params)
    assert token_ids(got) == expected
    assert sum(events[0].num_cached_prompt_tokens for events in got.values()) > 0
    # Concurrent admission and chunked prefill through cached blocks change nothing either.
    batched = make_engine(block_size=BLOCK, max_num_batched_tokens=9)
    run_in_order(batched, dict(list(requests.items())[:1]), params)  # warm the cache
    assert token_ids(batched.generate(requests, params)) == expected
    assert off.stats().prefix_cache_hits_total == 0 == off.stats().prefix_cache_queries_total


def test_hit_counters_match_the_expected_reuse(make_engine: EngineFactory) -> None:
    prefix_len, count = 22, 6  # 5 full shared blocks of 4 tokens (+2 tokens)
    requests = shared_prefix_prompts(count, prefix_len, seed=1)
    requests = {rid: [*p, 7, 8, 9] for rid, p in requests.items()}  # suffixes differ after
    engine = make_engine(block_size=BLOCK)
    params = SamplingParams(max_tokens=3, temperature=0.0, ignore_eos=True)
    results = run_in_order(engine, requests, params)
    shared_blocks = prefix_len // BLOCK
    stats = engine.stats()
    assert stats.prefix_cache_queries_total == sum(len(p) for p in requests.values())
    # The first request finds nothing; each later one finds every full shared block, plus
    # whatever full blocks of its own suffix earlier prompts happen to share (none here).
    first_events = [events[0] for events in results.values()]
    cached = [event.num_cached_prompt_tokens for event in first_events]
    assert cached[0] == 0
    assert all(c >= shared_blocks * BLOCK for c in cached[1:])
    assert stats.prefix_cache_hits_total == sum(cached)
    repeat = engine.generate({"again": requests["r1"]}, params)["again"]
    whole_blocks = (len(requests["r1"]) - 1) // BLOCK  # the last token is always recomputed
    assert repeat[0].num_cached_prompt_tokens == whole_blocks * BLOCK
    assert [e.token_id for e in repeat] == [e.token_id for e in results["r1"]]


def test_exact_expected_hits_on_a_block_aligned_workload(make_engine: EngineFactory) -> None:
    """Expected hits = full shared blocks x block size x (requests - 1)."""
    prefix = list(range(100, 132))  # 8 blocks of 4
    requests = {f"r{i}": [*prefix, 200 + i, 300 + i, 400 + i] for i in range(5)}
    engine = make_engine(block_size=BLOCK)
    run_in_order(engine, requests, SamplingParams(max_tokens=2, temperature=0.0))
    stats = engine.stats()
    assert stats.prefix_cache_hits_total == 8 * BLOCK * (len(requests) - 1)
    assert stats.prefix_cache_queries_total == 35 * len(requests)


def test_preemption_and_abort_keep_reference_counts_right(make_engine: EngineFactory) -> None:
    requests = shared_prefix_prompts(8, prefix_len=16, seed=2)
    params = SamplingParams(max_tokens=20, temperature=0.0, ignore_eos=True)
    expected = token_ids(run_in_order(make_engine(enable_prefix_caching=False), requests, params))
    tight = make_engine(num_kv_blocks=24, block_size=BLOCK, max_model_len=64)
    run_in_order(tight, {"r0": requests["r0"]}, params)
    got = token_ids(tight.generate(requests, params))
    assert tight.stats().num_preemptions_total > 0
    assert got == expected
    manager = tight.block_manager
    assert manager.num_free_blocks == 24 and not any(manager.ref_counts)
    # Abort while sharing cached blocks: every reference comes back.
    run_in_order(tight, {"warm": requests["r0"]}, params)
    tight.add_request("a", requests["r3"], params)
    tight.add_request("b", requests["r4"], params)
    tight.step()
    assert max(manager.ref_counts) == 2  # both hold the cached prefix blocks
    assert tight.abort_request("a") and tight.abort_request("b")
    assert manager.num_free_blocks == 24 and not any(manager.ref_counts)


def test_requests_admitted_in_the_same_step_share_the_prefix(make_engine: EngineFactory) -> None:
    """A burst (or n > 1) reuses blocks computed in the very step it is admitted in."""
    prefix = list(range(100, 132))  # 8 blocks of 4
    requests = {f"r{i}": [*prefix, 200 + i, 300 + i] for i in range(4)}
    params = SamplingParams(max_tokens=6, temperature=0.0, ignore_eos=True)
    expected = token_ids(make_engine(enable_prefix_caching=False).generate(requests, params))
    engine = make_engine(block_size=BLOCK)
    results = engine.generate(requests, params)
    assert token_ids(results) == expected
    assert [events[0].num_cached_prompt_tokens for events in results.values()] == [0, 32, 32, 32]
    assert engine.stats().prefix_cache_hits_total == 8 * BLOCK * 3
    assert not any(engine.block_manager.ref_counts)


def test_a_preempted_chunk_withdraws_its_uncomputed_blocks() -> None:
    blocks = BlockManager(num_blocks=4, block_size=BLOCK)
    hashes = chain(list(range(8)))
    table: list[int] = []
    blocks.allocate(table, 8)
    blocks.register(table, hashes, 0)  # offered for a step that then never ran
    blocks.unregister(table, 1)  # only the first block had been computed
    blocks.free(table)
    assert len(blocks.find_cached(hashes)) == 1


def test_prefix_counters_are_exported_from_engine_stats() -> None:
    stats = EngineStats(
        0, 0, 0.0, 0, 0, 0, 0, 0, prefix_cache_queries_total=96, prefix_cache_hits_total=64
    )
    metrics = ServerMetrics("m", {}, lambda: stats)
    samples = {
        s.name: s.value
        for family in text_string_to_metric_families(metrics.render()[0].decode())
        for s in family.samples
    }
    assert samples["vllm:prefix_cache_queries_total"] == 96
    assert samples["vllm:prefix_cache_hits_total"] == 64
