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
    params = [SamplingParams(max_tokens=1, temperature=1.0, seed=i) for i in range(4)]
    first = [t.token_id for t in sample(logits, params, generators(4))]
    again = [t.token_id for t in sample(logits, params, generators(4))]
    assert first == again
    alone = sample(logits[2:3], params[2:3], [torch.Generator().manual_seed(2)])
    assert alone[0].token_id == first[2]


def reference_probs(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """One row's distribution, written out plainly: temperature, top_k, top_p."""
    scaled = logits / params.temperature
    if params.top_k:
        scaled = scaled.masked_fill(scaled < scaled.topk(params.top_k).values[-1], -torch.inf)
    probs = scaled.softmax(-1)
    if params.top_p < 1.0:
        ordered, order = probs.sort(descending=True)
        drop = ordered.cumsum(-1) - ordered >= params.top_p
        drop[0] = False
        probs = probs.masked_fill(drop.scatter(0, order, drop), 0.0)
        probs = probs / probs.sum()
    return probs


MIXED = [
    SamplingParams(max_tokens=1, temperature=0.8, top_p=0.9, seed=11),
    SamplingParams(max_tokens=1, temperature=0.0),
    SamplingParams(max_tokens=1, temperature=1.3, seed=12),
    SamplingParams(max_tokens=1, temperature=0.7, top_k=5, seed=13),
    SamplingParams(max_tokens=1, temperature=1.0),  # unseeded
    SamplingParams(max_tokens=1, temperature=1.1, top_k=8, top_p=0.7, seed=14),
]


def test_a_seeded_row_draws_what_multinomial_draws_from_its_own_generator() -> None:
    """Per request, the draw is torch.multinomial's over the filtered distribution (what the
    per-row sampler did before), whatever shares the batch."""
    logits = logits_batch(rows=len(MIXED), vocab=300)
    for step in range(20):
        got = sample(logits, MIXED, generators(len(MIXED), seed=step))
        for i, params in enumerate(MIXED):
            if params.seed is None:
                continue
            probs = reference_probs(logits[i], params)
            generator = torch.Generator().manual_seed(step + i)
            expected = torch.multinomial(probs, 1, generator=generator).item()
            assert got[i].token_id == expected, (step, i)


def test_a_seeded_request_draws_the_same_alone_or_in_any_batch() -> None:
    logits = logits_batch(rows=len(MIXED), vocab=300)
    together = sample(logits, MIXED, generators(len(MIXED)))
    reversed_rows = list(reversed(range(len(MIXED))))
    shuffled = sample(
        logits[reversed_rows],
        [MIXED[i] for i in reversed_rows],
        [generators(len(MIXED))[i] for i in reversed_rows],
    )
    for i, params in enumerate(MIXED):
        if params.seed is None:
            continue
        alone = sample(logits[i : i + 1], [params], [generators(len(MIXED))[i]])
        assert alone[0].token_id == together[i].token_id
        assert shuffled[reversed_rows.index(i)].token_id == together[i].token_id


def test_unseeded_rows_share_one_draw_that_follows_the_distribution() -> None:
    row = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0, -30.0]])
    rows = 4000
    params = [SamplingParams(max_tokens=1, temperature=1.0)] * rows
    got = sample(row.expand(rows, -1), params, generators(rows))
    counts = torch.bincount(torch.tensor([t.token_id for t in got]), minlength=6)
    assert (counts / rows - row[0].softmax(-1)).abs().max() < 0.03
    assert counts[5] == 0  # p ~ 1e-14
    again = sample(row.expand(rows, -1), params, generators(rows))
    assert [t.token_id for t in got] == [t.token_id for t in again]


def test_a_row_without_truncation_keeps_the_whole_vocabulary_beside_top_k_rows() -> None:
    """Rows with top_k (and top_p) sort only their top candidates; a plain row beside them
    must still reach every token."""
    vocab = 30
    flat = torch.linspace(0.0, 0.1, vocab).repeat(2, 1)  # nearly uniform, no ties
    params = [
        SamplingParams(max_tokens=1, temperature=1.0, top_k=2, top_p=0.9, seed=1),
        SamplingParams(max_tokens=1, temperature=1.0, seed=2),
    ]
    drawn: list[set[int]] = [set(), set()]
    for s in range(300):
        for i, token in enumerate(sample(flat, params, generators(2, seed=s))):
            drawn[i].add(token.token_id)
    assert len(drawn[0]) == 2 and len(drawn[1]) == vocab


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
