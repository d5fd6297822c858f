"""vLLM's extra sampling parameters on the real model (SmolLM2-135M-Instruct) through the
official `openai` client, each checked token by token against transformers' logits processors
applied to transformers' own logits of the same GGUF file (teacher-forced: logits_reference)."""

from __future__ import annotations

from typing import Any

import openai
import pytest
import torch
from logits_reference import (
    TransformersModel,
    assert_greedy,
    chat_prompt_ids,
    step_scores,
    token_ids,
)
from transformers import (
    MinNewTokensLengthLogitsProcessor,
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
)

PIRATE = [
    {"role": "system", "content": "You are a pirate. Always answer like a pirate."},
    {"role": "user", "content": "How are you today?"},
]
CAPITAL = [{"role": "user", "content": "What is the capital of France?"}]  # 8 tokens, then EOS
EOS = 2  # <|im_end|>, the engine's end-of-turn token for this model


class OpenAIPenalties:
    """OpenAI's documented frequency / presence penalties over the generated tokens only
    (transformers has no processor for them)."""

    def __init__(self, prompt_len: int, frequency: float, presence: float) -> None:
        self.prompt_len, self.frequency, self.presence = prompt_len, frequency, presence

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        generated = input_ids[0, self.prompt_len :]
        counts = torch.bincount(generated, minlength=scores.shape[-1]).float()[None]
        return scores - self.frequency * counts - self.presence * (counts > 0).float()


@pytest.fixture(scope="module")
def smollm2(
    smollm2_api: tuple[openai.OpenAI, TransformersModel],
) -> tuple[openai.OpenAI, TransformersModel]:
    return smollm2_api


@pytest.fixture(scope="module")
def client(smollm2: tuple[openai.OpenAI, TransformersModel]) -> openai.OpenAI:
    return smollm2[0]


@pytest.fixture(scope="module")
def smollm2_reference(smollm2: tuple[openai.OpenAI, TransformersModel]) -> TransformersModel:
    return smollm2[1]


def chat(client: openai.OpenAI, messages: list[dict[str, str]], **extra: Any) -> Any:
    settings: dict[str, Any] = {"temperature": 0, "max_tokens": 24, "logprobs": True}
    settings.update({k: v for k, v in extra.items() if k in ("temperature", "max_tokens", "seed",
                                                            "n", "stop")})  # fmt: skip
    body = {k: v for k, v in extra.items() if k not in settings}
    model = client.models.list().data[0].id
    return client.chat.completions.create(
        model=model,
        messages=messages,  # type: ignore[arg-type]
        extra_body=body or None,
        **settings,
    )


def test_repetition_penalty_is_transformers(client: openai.OpenAI, smollm2_reference: Any) -> None:
    plain = chat(client, PIRATE)
    penalized = chat(client, PIRATE, repetition_penalty=1.5)
    assert penalized.choices[0].message.content != plain.choices[0].message.content
    tokenizer = smollm2_reference.tokenizer
    prompt = chat_prompt_ids(tokenizer, PIRATE, add_generation_prompt=True)
    output = token_ids(tokenizer, penalized.choices[0].logprobs.content)
    assert len(output) >= 10
    assert_greedy(smollm2_reference.model, prompt, output, [RepetitionPenaltyLogitsProcessor(1.5)])


def test_frequency_and_presence_penalties_follow_openai(
    client: openai.OpenAI, smollm2_reference: Any
) -> None:
    plain = chat(client, PIRATE, max_tokens=32)
    penalized = chat(client, PIRATE, max_tokens=32, frequency_penalty=0.8, presence_penalty=0.6)
    assert penalized.choices[0].message.content != plain.choices[0].message.content
    tokenizer = smollm2_reference.tokenizer
    prompt = chat_prompt_ids(tokenizer, PIRATE, add_generation_prompt=True)
    output = token_ids(tokenizer, penalized.choices[0].logprobs.content)
    assert_greedy(smollm2_reference.model, prompt, output, [OpenAIPenalties(len(prompt), 0.8, 0.6)])


def test_min_tokens_holds_back_the_end_of_turn(
    client: openai.OpenAI, smollm2_reference: Any
) -> None:
    plain = chat(client, CAPITAL)
    assert plain.choices[0].finish_reason == "stop" and plain.usage.completion_tokens <= 8
    # Special tokens kept in the text so every logprob entry maps back to its token id.
    held = chat(client, CAPITAL, max_tokens=12, min_tokens=12, skip_special_tokens=False)
    assert held.choices[0].finish_reason == "length" and held.usage.completion_tokens == 12
    tokenizer = smollm2_reference.tokenizer
    prompt = chat_prompt_ids(tokenizer, CAPITAL, add_generation_prompt=True)
    output = token_ids(tokenizer, held.choices[0].logprobs.content)
    processor = MinNewTokensLengthLogitsProcessor(len(prompt), 12, eos_token_id=EOS)
    assert_greedy(smollm2_reference.model, prompt, output, [processor])


def test_min_p_samples_only_within_transformers_support(
    client: openai.OpenAI, smollm2_reference: Any
) -> None:
    sampled = chat(client, PIRATE, temperature=1.5, seed=7, n=2, max_tokens=12, min_p=0.3)
    tokenizer = smollm2_reference.tokenizer
    prompt = chat_prompt_ids(tokenizer, PIRATE, add_generation_prompt=True)
    warpers = [TemperatureLogitsWarper(1.5), MinPLogitsWarper(0.3)]
    drawn = 0
    for choice in sampled.choices:
        output = token_ids(tokenizer, choice.logprobs.content)
        for t, scores in enumerate(step_scores(smollm2_reference.model, prompt, output, warpers)):
            assert torch.isfinite(scores[output[t]]), f"step {t}: outside min_p's support"
            drawn += 1
    assert drawn >= 12
    # Without min_p the same seeds draw outside that support (so the check above can fail).
    free = chat(client, PIRATE, temperature=1.5, seed=7, n=2, max_tokens=12)
    outside = 0
    for choice in free.choices:
        output = token_ids(tokenizer, choice.logprobs.content)
        steps = step_scores(smollm2_reference.model, prompt, output, warpers)
        outside += sum(not torch.isfinite(s[output[t]]) for t, s in enumerate(steps))
    assert outside > 0


def test_include_stop_str_in_output(client: openai.OpenAI) -> None:
    model = client.models.list().data[0].id
    kwargs: dict[str, Any] = {"model": model, "prompt": "The capital of France is",
                              "temperature": 0, "max_tokens": 24, "stop": ["."]}  # fmt: skip
    cut = client.completions.create(**kwargs).choices[0]
    kept = client.completions.create(
        **kwargs, extra_body={"include_stop_str_in_output": True}
    ).choices[0]
    assert cut.finish_reason == kept.finish_reason == "stop"
    assert "." not in cut.text and kept.text == cut.text + "."
    # The end-of-turn token's text shows when special tokens are kept and stops are included.
    shown = chat(client, CAPITAL, skip_special_tokens=False, include_stop_str_in_output=True)
    plain = chat(client, CAPITAL)
    assert shown.choices[0].message.content == plain.choices[0].message.content + "<|im_end|>"
    assert shown.choices[0].logprobs.content[-1].token == "<|im_end|>"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"use_beam_search": True}, "use_beam_search"),
        ({"guided_json": {"type": "object"}}, "guided_json"),
        ({"logit_bias": {"42": 5}}, "logit_bias"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"min_tokens": 50}, "min_tokens"),
    ],
)
def test_unsupported_or_invalid_fields_are_400_naming_them(
    client: openai.OpenAI, extra: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        chat(client, CAPITAL, max_tokens=4, **extra)
    assert caught.value.body["param"] == param  # type: ignore[index]
