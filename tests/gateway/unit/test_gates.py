"""The cascade gate on parsed answers: each test escalates, a good answer passes."""

from __future__ import annotations

from typing import Any

import pytest

from llm_gateway.gates import CompiledGate, failing_gate, mean_token_logprob
from llm_operator.api.route import Gate


def gate(**fields: Any) -> CompiledGate:
    return CompiledGate.of(Gate.model_validate(fields))


def chat(text: str | None, finish: str = "stop", logprobs: list[float] | None = None) -> Any:
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish,
                              "message": {"role": "assistant", "content": text}}  # fmt: skip
    if logprobs is not None:
        choice["logprobs"] = {"content": [{"token": "t", "logprob": v} for v in logprobs]}
    return {"choices": [choice]}


def completion(text: str, finish: str = "stop", logprobs: list[float | None] | None = None) -> Any:
    choice: dict[str, Any] = {"index": 0, "text": text, "finish_reason": finish}
    choice["logprobs"] = None if logprobs is None else {"token_logprobs": logprobs}
    return {"choices": [choice]}


FULL = {"minMeanTokenLogprob": -1.0, "rejectPattern": "(?i)i don't know"}


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (chat("Paris.", logprobs=[-0.1, -0.5]), None),
        (completion(" 42", logprobs=[-0.2, -0.3]), None),
        (chat("   \n", logprobs=[-0.1]), "empty"),
        (chat(None, logprobs=[-0.1]), "empty"),
        ({"choices": []}, "empty"),
        (chat("Paris is the", finish="length", logprobs=[-0.1]), "length"),
        (chat("Well, I don't know.", logprobs=[-0.1]), "pattern"),
        (completion("I DON'T KNOW", logprobs=[-0.1]), "pattern"),
        (chat("Paris.", logprobs=[-0.5, -2.0]), "logprob"),  # mean -1.25 < -1.0
        (completion(" 42", logprobs=[None, -3.0, -0.1]), "logprob"),  # None skipped: -1.55
        (completion(" 42", logprobs=[None, -1.0, -0.5]), None),  # -0.75
        (chat("Paris."), "logprob"),  # asked for logprobs, none came: nothing vouches for it
        # The cheapest test that fails names the gate.
        (chat("", finish="length", logprobs=[-9.0]), "empty"),
        (chat("I don't know", finish="length", logprobs=[-9.0]), "length"),
    ],
)
def test_each_test_escalates_and_a_good_answer_passes(answer: Any, expected: str | None) -> None:
    assert failing_gate(gate(**FULL), answer) == expected


def test_any_failing_choice_fails_the_answer() -> None:
    good, bad = chat("Paris.")["choices"][0], chat("")["choices"][0]
    assert failing_gate(gate(), {"choices": [good, {**bad, "index": 1}]}) == "empty"
    assert failing_gate(gate(), {"choices": [good, good]}) is None


def test_tests_that_are_off_do_not_escalate() -> None:
    only_pattern = gate(escalateOnLength=False, escalateOnEmpty=False, rejectPattern="nope")
    assert failing_gate(only_pattern, chat("", finish="length")) is None
    assert failing_gate(only_pattern, chat("nope")) == "pattern"
    # Without a logprob threshold, logprobs are not needed.
    assert failing_gate(gate(), chat("fine")) is None
    assert not gate().needs_logprobs and gate(**FULL).needs_logprobs


def test_mean_token_logprob_reads_chat_and_completions() -> None:
    assert mean_token_logprob(chat("a", logprobs=[-1.0, -2.0])["choices"][0]) == -1.5
    assert mean_token_logprob(completion("a", logprobs=[-0.5])["choices"][0]) == -0.5
    assert mean_token_logprob(completion("a", logprobs=[])["choices"][0]) is None
    assert mean_token_logprob(chat("a")["choices"][0]) is None
