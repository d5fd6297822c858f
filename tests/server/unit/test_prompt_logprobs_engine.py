"""The engine's prompt logprobs on the tiny model: equal to scoring the whole prompt at once,
also when the prompt is prefilled in chunks and its blocks sit in the prefix cache."""

from __future__ import annotations

from collections.abc import Callable

import torch

from llm_server.engine.engine import LLMEngine
from llm_server.sampling_params import SamplingParams

PROMPT = [(7 * i + 3) % 500 + 5 for i in range(45)]


def test_prompt_logprobs_equal_whole_prompt_scoring(make_engine: Callable[..., LLMEngine]) -> None:
    engine = make_engine(max_num_batched_tokens=16, enable_prefix_caching=True)
    greedy = SamplingParams(max_tokens=1, temperature=0.0)
    engine.generate({"warm": PROMPT}, greedy)  # its full blocks are now cached
    params = SamplingParams(max_tokens=2, temperature=0.0, prompt_logprobs=3)
    events = engine.generate({"scored": PROMPT}, params)["scored"]
    got = events[0].prompt_logprobs
    assert got is not None and len(got) == len(PROMPT) and got[0] is None
    assert events[1].prompt_logprobs is None  # delivered once, with the first token
    expected = torch.log_softmax(engine.runner.score(PROMPT)[:-1], dim=-1)
    for i, entry in enumerate(got[1:], start=1):
        assert entry is not None and entry.token_id == PROMPT[i]
        row = expected[i - 1]
        assert abs(entry.logprob - float(row[PROMPT[i]])) < 1e-4
        assert entry.rank == int((row > row[PROMPT[i]]).sum()) + 1
        assert [tid for tid, _ in entry.top_logprobs] == row.topk(3).indices.tolist()
    # Requests without prompt logprobs still take the cached prefix.
    again = engine.generate({"cached": PROMPT}, greedy)["cached"]
    assert again[0].num_cached_prompt_tokens > 0 and again[0].prompt_logprobs is None


def test_prompt_logprobs_survive_preemption(make_engine: Callable[..., LLMEngine]) -> None:
    generator = torch.Generator().manual_seed(3)
    lengths = torch.randint(6, 40, (8,), generator=generator).tolist()
    requests = {f"r{i}": torch.randint(3, 500, (n,), generator=generator).tolist()
                for i, n in enumerate(lengths)}  # fmt: skip
    params = SamplingParams(max_tokens=24, temperature=0.0, ignore_eos=True, prompt_logprobs=0)
    # 16 blocks of 4 tokens and 8-token steps: prefills span steps and sequences get preempted.
    tight = make_engine(num_kv_blocks=16, block_size=4, max_model_len=64,
                        max_num_batched_tokens=8)  # fmt: skip
    results = tight.generate(requests, params)
    assert tight.stats().num_preemptions_total > 0
    for request_id, prompt in requests.items():
        got = results[request_id][0].prompt_logprobs
        assert got is not None and len(got) == len(prompt)
        expected = torch.log_softmax(tight.runner.score(prompt)[:-1], dim=-1)
        for i, entry in enumerate(got[1:], start=1):
            assert entry is not None and entry.token_id == prompt[i]
            assert abs(entry.logprob - float(expected[i - 1, prompt[i]])) < 1e-4
