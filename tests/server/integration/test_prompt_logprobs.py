"""Scoring text through the API on the real model: completions' `echo` + `logprobs` (what
lm-evaluation-harness sends) and vLLM's `prompt_logprobs`, against transformers' log-softmax
of the same GGUF file; perplexity through the API equals the model's."""

from __future__ import annotations

import math
from typing import Any

import openai
import pytest
import torch
from logits_reference import TransformersModel

TEXT = (
    "Kubernetes schedules pods onto nodes. Each pod runs one or more containers, and a "
    "Deployment keeps the requested number of replicas running."
)


@pytest.fixture(scope="module")
def smollm2(
    smollm2_api: tuple[openai.OpenAI, TransformersModel],
) -> tuple[openai.OpenAI, TransformersModel]:
    return smollm2_api


def reference_logprobs(reference: TransformersModel, ids: list[int]) -> torch.Tensor:
    """[len(ids) - 1, vocab]: row i is the distribution of token i + 1."""
    with torch.inference_mode():
        logits = reference.model(torch.tensor([ids])).logits[0].float()
    return torch.log_softmax(logits[:-1], dim=-1)


def complete(client: openai.OpenAI, **kwargs: Any) -> Any:
    model = client.models.list().data[0].id
    return client.completions.create(model=model, temperature=0, **kwargs)


def test_echo_logprobs_give_the_models_perplexity(
    smollm2: tuple[openai.OpenAI, TransformersModel],
) -> None:
    client, reference = smollm2
    ids = list(reference.tokenizer.encode(TEXT))
    expected = reference_logprobs(reference, ids)
    expected_token = expected.gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
    # The prompt's blocks are cached by a first request: scoring must still compute them.
    complete(client, prompt=TEXT, max_tokens=1)
    choice = complete(client, prompt=TEXT, max_tokens=1, echo=True, logprobs=1).choices[0]
    assert choice.text.startswith(TEXT)
    scored = choice.logprobs
    assert len(scored.tokens) == len(ids) + 1  # the prompt, then the generated token
    assert "".join(scored.tokens[: len(ids)]) == TEXT
    assert scored.token_logprobs[0] is None and scored.top_logprobs[0] is None
    got = torch.tensor(scored.token_logprobs[1 : len(ids)])
    assert torch.allclose(got, expected_token, atol=2e-3)
    perplexity = math.exp(-float(got.mean()))
    assert perplexity == pytest.approx(math.exp(-float(expected_token.mean())), rel=1e-3)
    assert 1.0 < perplexity < 1000
    offsets = scored.text_offset
    assert offsets[0] == 0 and offsets[len(ids)] == len(TEXT)
    ends = [*offsets[1 : len(ids)], len(TEXT)]
    pieces = [TEXT[a:b] for a, b in zip(offsets[: len(ids)], ends, strict=True)]
    assert pieces == scored.tokens[: len(ids)]
    best = expected.argmax(-1)
    for i in range(1, len(ids)):  # the top-1 is the model's most likely token
        (top_text,) = scored.top_logprobs[i]
        assert top_text == reference.tokenizer.decode([int(best[i - 1])])


def test_prompt_logprobs_have_vllms_shape_and_ranks(
    smollm2: tuple[openai.OpenAI, TransformersModel],
) -> None:
    client, reference = smollm2
    ids = list(reference.tokenizer.encode(TEXT))
    expected = reference_logprobs(reference, ids)
    choice = complete(client, prompt=TEXT, max_tokens=2, extra_body={"prompt_logprobs": 3})
    entries = choice.choices[0].model_extra["prompt_logprobs"]
    assert len(entries) == len(ids) and entries[0] is None
    for i in range(1, len(ids)):
        row = expected[i - 1]
        entry = entries[i]
        actual = entry[str(ids[i])]
        assert actual["logprob"] == pytest.approx(float(row[ids[i]]), abs=2e-3)
        assert actual["rank"] == int((row > row[ids[i]]).sum()) + 1
        top = {int(k): v for k, v in entry.items() if v["rank"] <= 3 and int(k) != ids[i]}
        assert set(top) <= set(row.topk(3).indices.tolist())
    plain = complete(client, prompt=TEXT, max_tokens=2).choices[0]
    assert "prompt_logprobs" not in (plain.model_extra or {})


def test_chat_prompt_logprobs_cover_the_templated_prompt(
    smollm2: tuple[openai.OpenAI, TransformersModel],
) -> None:
    client, _ = smollm2
    model = client.models.list().data[0].id
    response = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=2, temperature=0,
        extra_body={"prompt_logprobs": 0},
    )  # fmt: skip
    entries = response.model_extra["prompt_logprobs"]
    assert len(entries) == response.usage.prompt_tokens and entries[0] is None
    assert all(len(entry) == 1 for entry in entries[1:])  # k = 0: the prompt token alone


def test_streamed_echo_carries_the_prompt_logprobs_first(
    smollm2: tuple[openai.OpenAI, TransformersModel],
) -> None:
    client, reference = smollm2
    ids = list(reference.tokenizer.encode(TEXT))
    chunks = list(complete(client, prompt=TEXT, max_tokens=3, echo=True, logprobs=0, stream=True))
    first = chunks[0].choices[0]
    assert first.text == TEXT and len(first.logprobs.tokens) == len(ids)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    whole = complete(client, prompt=TEXT, max_tokens=3, echo=True, logprobs=0).choices[0]
    assert text == whole.text
    streamed = [lp for c in chunks if c.choices and c.choices[0].logprobs
                for lp in c.choices[0].logprobs.token_logprobs]  # fmt: skip
    assert streamed[1:] == pytest.approx(whole.logprobs.token_logprobs[1:], abs=1e-5)


def test_prompt_logprobs_cannot_stream(smollm2: tuple[openai.OpenAI, TransformersModel]) -> None:
    client, _ = smollm2
    with pytest.raises(openai.BadRequestError):
        list(complete(client, prompt="x", stream=True, extra_body={"prompt_logprobs": 1}))
