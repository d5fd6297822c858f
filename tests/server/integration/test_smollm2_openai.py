"""The real model end to end: SmolLM2-135M-Instruct from its GGUF file, served by llm-server
and asked through the official `openai` client, against transformers on the same file.

The server and transformers are the session's `smollm2_api` (loaded once, side by side).
Greedy parity is teacher-forced (logits_reference.py): one reference forward over prompt +
answer, and at every step our token must be transformers' argmax or an fp32 near-tie of it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from logits_reference import assert_greedy, chat_prompt_ids, token_ids
from running_server import SERVED_NAME

MAX_TOKENS = 32
# Varied chat prompts: facts, arithmetic, code, lists, system prompts, multi-turn.
PROMPTS: tuple[tuple[dict[str, str], ...], ...] = (
    ({"role": "user", "content": "What is the capital of France?"},),
    ({"role": "user", "content": "Name three primary colors."},),
    ({"role": "user", "content": "What is 12 plus 30?"},),
    ({"role": "user", "content": "Write a Python function that adds two numbers."},),
    ({"role": "user", "content": "Translate 'good morning' into Spanish."},),
    ({"role": "user", "content": "Give me a synonym for happy."},),
    ({"role": "user", "content": "Why do leaves change color in autumn?"},),
    ({"role": "user", "content": "List the planets of the solar system."},),
    (
        {"role": "system", "content": "You are a pirate. Always answer like a pirate."},
        {"role": "user", "content": "How are you today?"},
    ),
    (
        {"role": "system", "content": "Answer with a single word."},
        {"role": "user", "content": "What color is the sky on a clear day?"},
    ),
    (
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Nice to meet you, Ada!"},
        {"role": "user", "content": "What is my name?"},
    ),
    ({"role": "user", "content": "Explain what a Kubernetes pod is in one sentence."},),
)


def _ask(client: Any, messages: Any, **extra: Any) -> Any:
    return client.chat.completions.create(
        model=SERVED_NAME, messages=list(messages), max_tokens=MAX_TOKENS, temperature=0, **extra
    )


def _answers(client: Any, in_flight: int) -> list[Any]:
    with ThreadPoolExecutor(in_flight) as pool:
        return list(pool.map(lambda m: _ask(client, m, logprobs=True), PROMPTS))


def _texts(responses: list[Any]) -> list[str]:
    return [r.choices[0].message.content for r in responses]


@pytest.fixture(scope="module")
def one_at_a_time(smollm2_api: tuple[Any, Any]) -> list[Any]:
    return _answers(smollm2_api[0], in_flight=1)


def test_greedy_answers_match_transformers(
    smollm2_api: tuple[Any, Any], one_at_a_time: list[Any]
) -> None:
    """Every token is transformers' greedy choice (or a near-tie), and a `stop` is its
    end-of-turn token: token-exact greedy decoding, checked in one forward per prompt."""
    assert len(PROMPTS) >= 10
    reference = smollm2_api[1]
    tokenizer = reference.tokenizer
    for messages, response in zip(PROMPTS, one_at_a_time, strict=True):
        choice = response.choices[0]
        prompt = chat_prompt_ids(tokenizer, list(messages), add_generation_prompt=True)
        output = token_ids(tokenizer, choice.logprobs.content)
        if choice.finish_reason == "stop":
            output = [*output, tokenizer.eos_token_id]
        assert_greedy(reference.model, prompt, output, [])


def test_the_answers_make_sense(one_at_a_time: list[Any]) -> None:
    texts = _texts(one_at_a_time)
    assert "Paris" in texts[0]
    assert "Ada" in texts[10]


def test_eight_in_flight_give_the_same_answers(
    smollm2_api: tuple[Any, Any], one_at_a_time: list[Any]
) -> None:
    assert _texts(_answers(smollm2_api[0], in_flight=8)) == _texts(one_at_a_time)


def test_stops_at_end_of_turn_and_counts_the_chat_template(
    smollm2_api: tuple[Any, Any], one_at_a_time: list[Any]
) -> None:
    tokenizer = smollm2_api[1].tokenizer
    response = one_at_a_time[0]
    choice = response.choices[0]
    assert choice.finish_reason == "stop"
    assert "<|im_end|>" not in choice.message.content
    prompt = chat_prompt_ids(tokenizer, list(PROMPTS[0]), add_generation_prompt=True)
    assert response.usage.prompt_tokens == len(prompt)
    # The end-of-turn token is generated, so counted (as vLLM and OpenAI count it), not shown.
    shown = token_ids(tokenizer, choice.logprobs.content)
    assert response.usage.completion_tokens == len(shown) + 1 < MAX_TOKENS


def test_streamed_answer_is_the_same_text(
    smollm2_api: tuple[Any, Any], one_at_a_time: list[Any]
) -> None:
    chunks = list(_ask(smollm2_api[0], PROMPTS[1], stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == _texts(one_at_a_time)[1]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
