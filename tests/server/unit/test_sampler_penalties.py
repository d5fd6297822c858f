"""The batched sampler's penalties, min_p and min_tokens on small tensors against transformers'
logits processors, rows with different settings sharing one batch."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import (
    MinNewTokensLengthLogitsProcessor,
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
)

from llm_server.layers.penalties import apply_min_tokens, apply_penalties
from llm_server.layers.sampler import sample
from llm_server.sampling_params import SamplingParams

VOCAB = 40


@dataclass
class History:
    prompt_token_ids: list[int]
    output_token_ids: list[int]
    banned_before_min_tokens: tuple[int, ...] = ()
    generator: torch.Generator = field(default_factory=torch.Generator)


def logits(rows: int) -> torch.Tensor:
    return torch.randn(rows, VOCAB, generator=torch.Generator().manual_seed(1)) * 4


def test_repetition_penalty_is_transformers_and_rows_are_independent() -> None:
    histories = [History([1, 2, 3], [5, 5, 7]), History([4], [9]), History([2], [])]
    params = [SamplingParams(max_tokens=8, repetition_penalty=1.7),
              SamplingParams(max_tokens=8),
              SamplingParams(max_tokens=8, repetition_penalty=0.5)]  # fmt: skip
    raw = logits(3)
    got = apply_penalties(raw.clone(), params, histories)
    for row, (p, h) in enumerate(zip(params, histories, strict=True)):
        ids = torch.tensor([h.prompt_token_ids + h.output_token_ids])
        expected = RepetitionPenaltyLogitsProcessor(p.repetition_penalty)(ids, raw[row : row + 1])
        assert torch.allclose(got[row], expected[0])
    assert torch.equal(got[1], raw[1])  # no penalty: untouched


def test_frequency_and_presence_count_only_the_output() -> None:
    history = History([3, 3, 3], [5, 5, 7])
    params = SamplingParams(max_tokens=8, frequency_penalty=0.5, presence_penalty=1.0)
    raw = logits(1)
    got = apply_penalties(raw.clone(), [params], [history])[0]
    expected = raw[0].clone()
    expected[5] -= 2 * 0.5 + 1.0
    expected[7] -= 0.5 + 1.0
    assert torch.allclose(got, expected)  # token 3 (prompt only) unchanged


def test_min_tokens_is_transformers_until_reached() -> None:
    histories = [History([1], [4, 4], (2, 6)), History([1], [4, 4, 4], (2, 6))]
    params = [SamplingParams(max_tokens=8, min_tokens=3)] * 2
    raw = logits(2)
    got = apply_min_tokens(raw.clone(), params, histories)
    processor = MinNewTokensLengthLogitsProcessor(1, 3, eos_token_id=[2, 6])
    for row, h in enumerate(histories):
        ids = torch.tensor([h.prompt_token_ids + h.output_token_ids])
        assert torch.equal(got[row], processor(ids, raw[row : row + 1].clone())[0])
    assert torch.isinf(got[0, [2, 6]]).all() and torch.equal(got[1], raw[1])


def test_min_p_draws_only_within_transformers_support() -> None:
    raw = logits(1)
    params = SamplingParams(max_tokens=1, temperature=1.5, min_p=0.2)
    warped = MinPLogitsWarper(0.2)(None, TemperatureLogitsWarper(1.5)(None, raw.clone()))
    support = set(torch.isfinite(warped[0]).nonzero()[:, 0].tolist())
    assert 1 < len(support) < VOCAB
    drawn = {sample(raw, [params], [torch.Generator().manual_seed(s)])[0].token_id
             for s in range(300)}  # fmt: skip
    assert drawn <= support and len(drawn) > 1


def test_greedy_takes_the_penalized_argmax_but_logprobs_stay_raw() -> None:
    raw = torch.zeros(1, VOCAB)
    raw[0, 5], raw[0, 6] = 3.0, 2.0
    history = History([5], [])
    params = SamplingParams(max_tokens=1, temperature=0.0, repetition_penalty=2.0, logprobs=1)
    token = sample(raw, [params], [history.generator], [history])[0]
    assert token.token_id == 6  # 3 / 2 < 2
    assert token.logprob == float(torch.log_softmax(raw[0], -1)[6])
    assert token.top_logprobs[0][0] == 5  # the raw distribution's best
