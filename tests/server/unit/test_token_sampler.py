from __future__ import annotations

import torch

from llm_server.layers.sampler import sample
from llm_server.sampling_params import SamplingParams


def logits_batch(rows: int = 4, vocab: int = 50) -> torch.Tensor:
    return torch.randn(rows, vocab, generator=torch.Generator().manual_seed(0)) * 3


def generators(count: int, seed: int = 0) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed + i) for i in range(count)]


def test_greedy_top_k_one_and_tiny_top_p_pick_the_argmax() -> None:
    logits = logits_batch()
    expected = logits.argmax(-1).tolist()
    for params in (
        SamplingParams(max_tokens=1, temperature=0.0),
        SamplingParams(max_tokens=1, temperature=1.0, top_k=1),
        SamplingParams(max_tokens=1, temperature=1.0, top_p=1e-6),
    ):
        got = sample(logits, [params] * 4, generators(4))
        assert [t.token_id for t in got] == expected


def test_top_k_and_top_p_restrict_the_support() -> None:
    logits = logits_batch(rows=1)
    top5 = set(logits[0].topk(5).indices.tolist())
    params = SamplingParams(max_tokens=1, temperature=2.0, top_k=5)
    drawn = {sample(logits, [params], generators(1, s))[0].token_id for s in range(200)}
    assert drawn <= top5 and len(drawn) > 1
    probs = logits[0].softmax(-1)
    order = probs.argsort(descending=True)
    nucleus = set(order[: int((probs[order].cumsum(0) < 0.8).sum()) + 1].tolist())
    params = SamplingParams(max_tokens=1, temperature=1.0, top_p=0.8)
    drawn = {sample(logits, [params], generators(1, s))[0].token_id for s in range(200)}
    assert drawn <= nucleus


def test_seeded_generators_reproduce_and_rows_are_independent() -> None:
    logits = logits_batch()
    params = [SamplingParams(max_tokens=1, temperature=1.0)] * 4
    first = [t.token_id for t in sample(logits, params, generators(4))]
    again = [t.token_id for t in sample(logits, params, generators(4))]
    assert first == again
    alone = sample(logits[2:3], params[:1], [torch.Generator().manual_seed(2)])
    assert alone[0].token_id == first[2]


def test_logprobs_of_the_raw_distribution() -> None:
    logits = logits_batch(rows=2)
    params = [
        SamplingParams(max_tokens=1, temperature=0.5, logprobs=2),
        SamplingParams(max_tokens=1, temperature=0.0),
    ]
    got = sample(logits, params, generators(2))
    expected = torch.log_softmax(logits[0], -1)
    assert abs(got[0].logprob - expected[got[0].token_id].item()) < 1e-5  # type: ignore[operator]
    assert [t for t, _ in got[0].top_logprobs] == expected.topk(2).indices.tolist()
    assert got[1].logprob is None and got[1].top_logprobs == ()


def test_values_that_round_to_zero_in_float32_pick_the_argmax() -> None:
    logits = logits_batch()
    expected = logits.argmax(-1).tolist()
    for params in (
        SamplingParams(max_tokens=1, temperature=1.0, top_p=1e-300),
        SamplingParams(max_tokens=1, temperature=1e-300),
    ):
        got = sample(logits, [params] * 4, generators(4))
        assert [s.token_id for s in got] == expected
        assert all(s.error is None for s in got)


def test_a_row_that_cannot_be_sampled_fails_alone() -> None:
    logits = logits_batch()
    logits[1] = float("nan")
    got = sample(logits, [SamplingParams(max_tokens=1)] * 4, generators(4))
    assert [s.error is not None for s in got] == [False, True, False, False]
