"""The real model end to end: SmolLM2-135M-Instruct from its GGUF file, served by llm-server
and asked through the official `openai` client, against transformers on the same file.

One server and one transformers reference for the whole session (each takes seconds to load).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest
from running_server import ServerProcess, run_server
from smollm2_transformers import (
    MAX_TOKENS,
    NEAR_TIE_NATS,
    PROMPTS,
    Reference,
    build_reference,
    gguf_path,
)

SERVED = "smollm2"


@pytest.fixture(scope="session")
def smollm2_file() -> Path:
    return gguf_path()


@pytest.fixture(scope="session")
def smollm2_openai(
    smollm2_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[openai.OpenAI]:
    logs = tmp_path_factory.mktemp("smollm2-server")
    server: ServerProcess
    with run_server(smollm2_file, logs, "--served-model-name", SERVED) as server:
        yield openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="session")
def transformers_reference(smollm2_file: Path) -> Reference:
    return build_reference(smollm2_file)


def _ask(client: openai.OpenAI, messages: Any, **extra: Any) -> Any:
    return client.chat.completions.create(
        model=SERVED, messages=messages, max_tokens=MAX_TOKENS, temperature=0, **extra
    )


def _answers(client: openai.OpenAI, in_flight: int) -> list[Any]:
    with ThreadPoolExecutor(in_flight) as pool:
        return list(pool.map(lambda m: _ask(client, list(m)), PROMPTS))


def _texts(responses: list[Any]) -> list[str]:
    return [r.choices[0].message.content for r in responses]


@pytest.fixture(scope="session")
def one_at_a_time(smollm2_openai: openai.OpenAI) -> list[Any]:
    return _answers(smollm2_openai, in_flight=1)


def test_greedy_answers_match_transformers(
    one_at_a_time: list[Any], transformers_reference: Reference
) -> None:
    """Our token is transformers' argmax at every position, or loses to it by an fp32 near-tie
    (two kernels summing in different orders); at most two such ties in all."""
    assert len(PROMPTS) >= 10
    ties = []
    for index, response in enumerate(one_at_a_time):
        choice = response.choices[0]
        found = transformers_reference.divergences(
            index, choice.message.content, stopped=choice.finish_reason == "stop"
        )
        assert all(d.gap_nats < NEAR_TIE_NATS for d in found), (PROMPTS[index], found)
        ties += found
    assert len(ties) <= 2, ties


def test_the_answers_make_sense(one_at_a_time: list[Any]) -> None:
    texts = _texts(one_at_a_time)
    assert "Paris" in texts[0]
    assert "Ada" in texts[10]


def test_eight_in_flight_give_the_same_answers(
    smollm2_openai: openai.OpenAI, one_at_a_time: list[Any]
) -> None:
    assert _texts(_answers(smollm2_openai, in_flight=8)) == _texts(one_at_a_time)


def test_stops_at_end_of_turn_and_counts_the_chat_template(
    one_at_a_time: list[Any], transformers_reference: Reference
) -> None:
    response = one_at_a_time[0]
    choice = response.choices[0]
    assert choice.finish_reason == "stop"
    assert response.usage.completion_tokens < MAX_TOKENS
    assert "<|im_end|>" not in choice.message.content
    assert response.usage.prompt_tokens == len(transformers_reference.prompt_ids[0])
    # The end-of-turn token is generated, so counted (as vLLM and OpenAI count it), not shown.
    shown = transformers_reference.tokenizer.encode(
        choice.message.content, add_special_tokens=False
    )
    assert response.usage.completion_tokens == len(shown) + 1


def test_streamed_answer_is_the_same_text(
    smollm2_openai: openai.OpenAI, one_at_a_time: list[Any]
) -> None:
    stream = _ask(smollm2_openai, list(PROMPTS[1]), stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == _texts(one_at_a_time)[1]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
