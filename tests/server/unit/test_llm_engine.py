"""The engine end to end on the tiny model: batching, preemption and chunking change nothing."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from llm_server.engine.engine import LLMEngine
from llm_server.engine.errors import QueueFullError, RequestTooLongError
from llm_server.engine.request import TokenEvent
from llm_server.sampling_params import SamplingParams

EngineFactory = Callable[..., LLMEngine]
GREEDY = SamplingParams(max_tokens=12, temperature=0.0, ignore_eos=True)


def prompts(count: int, seed: int = 0) -> dict[str, list[int]]:
    """Prompts of varied lengths (3..40 tokens) drawn from the tiny vocabulary."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 41, (count,), generator=generator).tolist()
    return {
        f"r{i}": torch.randint(3, 500, (n,), generator=generator).tolist()
        for i, n in enumerate(lengths)
    }


def tokens(results: dict[str, list[TokenEvent]]) -> dict[str, list[int]]:
    return {rid: [e.token_id for e in events] for rid, events in results.items()}


def one_at_a_time(engine: LLMEngine, requests: dict[str, list[int]], params: SamplingParams):
    return {rid: tokens(engine.generate({rid: p}, params))[rid] for rid, p in requests.items()}


def test_batched_equals_unbatched(make_engine: EngineFactory) -> None:
    requests = prompts(10)
    engine = make_engine()
    alone = one_at_a_time(engine, requests, GREEDY)
    batched = tokens(make_engine().generate(requests, GREEDY))
    assert batched == alone
    assert all(len(t) == GREEDY.max_tokens for t in batched.values())


def test_preemption_and_resume_give_identical_output(make_engine: EngineFactory) -> None:
    requests = prompts(8, seed=1)
    params = SamplingParams(max_tokens=24, temperature=0.0, ignore_eos=True)
    expected = one_at_a_time(make_engine(), requests, params)
    # 16 blocks of 4 tokens: far less than the batch needs, so sequences get preempted.
    tight = make_engine(num_kv_blocks=16, block_size=4, max_model_len=64)
    got = tokens(tight.generate(requests, params))
    assert tight.stats().num_preemptions_total > 0
    assert got == expected
    assert tight.block_manager.num_free_blocks == 16


def test_chunked_prefill_equals_unchunked(make_engine: EngineFactory) -> None:
    requests = prompts(6, seed=2)
    unchunked = tokens(make_engine(max_num_batched_tokens=512).generate(requests, GREEDY))
    chunked_engine = make_engine(max_num_batched_tokens=7)  # every prompt is split
    chunked = tokens(chunked_engine.generate(requests, GREEDY))
    assert chunked == unchunked


def test_seeded_sampling_is_reproducible_whatever_the_batch(make_engine: EngineFactory) -> None:
    requests = prompts(4, seed=3)
    params = SamplingParams(max_tokens=16, temperature=0.9, top_p=0.9, top_k=50, seed=1234)
    engine = make_engine()
    alone = one_at_a_time(engine, requests, params)
    together = tokens(make_engine().generate(requests, params))
    assert together == alone
    unseeded = SamplingParams(max_tokens=16, temperature=1.0)
    first = tokens(make_engine(seed=7).generate(requests, unseeded))
    assert first == tokens(make_engine(seed=7).generate(requests, unseeded))
    assert first != tokens(make_engine(seed=8).generate(requests, unseeded))


def test_stop_token_ids_eos_and_ignore_eos(make_engine: EngineFactory) -> None:
    engine = make_engine()
    prompt = prompts(1, seed=4)["r0"]
    free_run = tokens(engine.generate({"a": prompt}, GREEDY))["a"]
    stop_at = next(i for i, t in enumerate(free_run) if t not in free_run[:i] and i >= 2)
    stop_id = free_run[stop_at]

    params = SamplingParams(max_tokens=12, temperature=0.0, stop_token_ids=(stop_id,))
    events = engine.generate({"b": prompt}, params)["b"]
    assert [e.token_id for e in events] == free_run[: stop_at + 1]
    assert events[-1].finish_reason == "stop"
    assert all(e.finish_reason is None for e in events[:-1])

    engine.eos_token_ids = frozenset({stop_id})  # pretend the model's eos is that token
    eos_stop = engine.generate({"c": prompt}, SamplingParams(max_tokens=12, temperature=0.0))
    assert eos_stop["c"][-1].finish_reason == "stop" and len(eos_stop["c"]) == stop_at + 1
    ignored = engine.generate({"d": prompt}, GREEDY)["d"]
    assert [e.token_id for e in ignored] == free_run
    assert ignored[-1].finish_reason == "length"


def test_max_tokens_and_max_model_len(make_engine: EngineFactory) -> None:
    engine = make_engine(max_model_len=20)
    prompt = list(range(5, 15))  # 10 tokens
    short = engine.generate({"a": prompt}, SamplingParams(max_tokens=3, temperature=0.0))["a"]
    assert len(short) == 3 and short[-1].finish_reason == "length"
    capped = engine.generate({"b": prompt}, SamplingParams(max_tokens=50, ignore_eos=True))["b"]
    assert len(capped) == 10 and capped[-1].finish_reason == "length"
    assert short[0].num_prompt_tokens == 10 and short[0].queue_time_s is not None
    with pytest.raises(RequestTooLongError):
        engine.add_request("long", list(range(20)), GREEDY)
    with pytest.raises(ValueError):
        engine.add_request("empty", [], GREEDY)


def test_logprobs_are_the_model_distribution(make_engine: EngineFactory) -> None:
    engine = make_engine()
    prompt = prompts(1, seed=5)["r0"]
    params = SamplingParams(max_tokens=4, temperature=0.0, logprobs=3, ignore_eos=True)
    events = engine.generate({"a": prompt}, params)["a"]
    generated = [e.token_id for e in events]
    logits = engine.runner.score(prompt + generated)
    for i, event in enumerate(events):
        expected = torch.log_softmax(logits[len(prompt) - 1 + i], dim=-1)
        assert event.logprob == pytest.approx(expected[event.token_id].item(), abs=1e-4)
        top_values, top_ids = expected.topk(3)
        assert [t for t, _ in event.top_logprobs] == top_ids.tolist()
        assert [v for _, v in event.top_logprobs] == pytest.approx(top_values.tolist(), abs=1e-4)
        assert event.top_logprobs[0][0] == event.token_id  # greedy picks the top token
    plain = engine.generate({"b": prompt}, GREEDY)["b"]
    assert plain[0].logprob is None and plain[0].top_logprobs == ()


def test_abort_frees_blocks_and_queue_is_bounded(make_engine: EngineFactory) -> None:
    engine = make_engine(max_waiting=2)
    total = engine.block_manager.num_free_blocks
    engine.add_request("a", list(range(3, 40)), GREEDY)
    engine.add_request("b", list(range(3, 20)), GREEDY)
    with pytest.raises(QueueFullError):
        engine.add_request("c", [5, 6], GREEDY)
    engine.step()
    assert engine.block_manager.num_free_blocks < total
    assert engine.abort_request("a") and engine.abort_request("b")
    assert not engine.abort_request("a")  # idempotent
    assert engine.block_manager.num_free_blocks == total
    assert not engine.has_unfinished()
    stats = engine.stats()
    assert stats.num_running == 0 and stats.kv_cache_usage == 0.0
