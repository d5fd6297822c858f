"""Chat on the real model through the `openai` client: logprob `bytes` are each token's real
bytes (an emoji split over two tokens included), logprobs list exactly the tokens the text
shows (not the end-of-turn token), and `continue_final_message` continues an assistant turn
as vLLM does, token for token what transformers would pick."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from logits_reference import (
    TransformersModel,
    assert_greedy,
    chat_prompt_ids,
    token_ids,
)

CAPITAL = [{"role": "user", "content": "What is the capital of France?"}]
STARTED = [*CAPITAL, {"role": "assistant", "content": "The capital of France is"}]
EMOJI = [
    {"role": "user", "content": "Show me three smiley emoji."},
    {"role": "assistant", "content": "Sure: 😀 😃"},
]
CONTINUE = {"add_generation_prompt": False, "continue_final_message": True}


@pytest.fixture(scope="module")
def smollm2(
    smollm2_api: tuple[openai.OpenAI, TransformersModel],
) -> tuple[openai.OpenAI, TransformersModel]:
    return smollm2_api


def chat(client: openai.OpenAI, messages: list[dict[str, str]], **extra: Any) -> Any:
    model = client.models.list().data[0].id
    return client.chat.completions.create(
        model=model, messages=messages, temperature=0, max_tokens=12, logprobs=True,
        extra_body=extra or None,  # type: ignore[arg-type]
    )  # fmt: skip


def test_bytes_are_each_tokens_real_bytes(
    smollm2: tuple[openai.OpenAI, TransformersModel],
) -> None:
    client, _ = smollm2
    choice = chat(client, EMOJI, top_logprobs=2, **CONTINUE).choices[0]
    content = choice.logprobs.content
    assert any(ord(c) > 0xFFFF for c in choice.message.content)  # the model wrote emoji
    assert b"".join(bytes(entry.bytes) for entry in content) == choice.message.content.encode()
    split = [entry for entry in content if _not_utf8(bytes(entry.bytes))]
    assert split, "expected an emoji split across tokens"
    for entry in content:
        assert "\ufffd" not in entry.token and bytes([0xEF, 0xBF, 0xBD]) not in bytes(entry.bytes)
        for top in entry.top_logprobs:
            assert bytes([0xEF, 0xBF, 0xBD]) not in bytes(top.bytes)
    # A piece of a character shows as \\xNN in `token` (OpenAI's convention), never U+FFFD.
    assert all("\\x" in entry.token for entry in split)


def _not_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return True
    return False


def test_logprobs_list_the_tokens_the_text_shows(
    smollm2: tuple[openai.OpenAI, TransformersModel],
) -> None:
    client, _ = smollm2
    response = chat(client, CAPITAL)
    choice = response.choices[0]
    assert choice.finish_reason == "stop" and "Paris" in choice.message.content
    tokens = [entry.token for entry in choice.logprobs.content]
    assert "".join(tokens) == choice.message.content  # no end-of-turn entry
    assert len(tokens) == response.usage.completion_tokens - 1  # which usage still counts
    streamed = list(
        client.chat.completions.create(
            model=response.model, messages=CAPITAL, temperature=0, max_tokens=12,  # type: ignore[arg-type]
            logprobs=True, stream=True,
        )
    )  # fmt: skip
    streamed_tokens = [e.token for c in streamed if c.choices and c.choices[0].logprobs
                       for e in c.choices[0].logprobs.content]  # fmt: skip
    assert streamed_tokens == tokens


def test_continue_final_message_extends_the_assistant_turn(
    smollm2: tuple[openai.OpenAI, TransformersModel],
) -> None:
    client, reference = smollm2
    choice = chat(client, STARTED, **CONTINUE).choices[0]
    assert choice.message.content.strip().startswith("Paris")
    prompt = chat_prompt_ids(reference.tokenizer, STARTED, continue_final_message=True)
    assert reference.tokenizer.decode(prompt).endswith("The capital of France is")
    assert_greedy(reference.model, prompt, token_ids(reference.tokenizer, choice.logprobs.content),
                  [])  # fmt: skip
    # A closed assistant turn (vLLM's add_generation_prompt false without continue) differs.
    closed = chat(client, STARTED, add_generation_prompt=False).choices[0]
    assert closed.message.content != choice.message.content
    with pytest.raises(openai.BadRequestError) as caught:
        chat(client, STARTED, continue_final_message=True)  # with add_generation_prompt
    assert "continue_final_message" in str(caught.value)
