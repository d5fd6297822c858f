"""A cascade's quality gate: does an answer fail it, and by which test? Pure.

The tests run cheapest first on every choice of a parsed (non-streamed) answer, chat or
completions: empty, then length, then the reject pattern, then the mean token logprob. The
first that fails names the gate (the metrics' `gate` label); None means the answer passes.
An answer that should carry logprobs but has none fails the logprob test: nothing vouches
for it, and a gate that never fired would hide that the upstream ignored the request.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from llm_operator.api.route import Gate

GateName = Literal["empty", "length", "pattern", "logprob"]


@dataclass(frozen=True)
class CompiledGate:
    """An LLMRoute's gate, its pattern compiled once (Python's re: the API refuses what RE2
    would not accept, so the pattern means the same here as in the CRD's check)."""

    min_mean_token_logprob: float | None
    escalate_on_length: bool
    escalate_on_empty: bool
    reject_pattern: re.Pattern[str] | None

    @classmethod
    def of(cls, gate: Gate) -> CompiledGate:
        pattern = re.compile(gate.reject_pattern) if gate.reject_pattern is not None else None
        return cls(
            gate.min_mean_token_logprob, gate.escalate_on_length, gate.escalate_on_empty, pattern
        )

    @property
    def needs_logprobs(self) -> bool:
        return self.min_mean_token_logprob is not None


def choice_text(choice: dict[str, Any]) -> str:
    """A choice's text: chat's message.content, or completions' text."""
    message = choice.get("message")
    if isinstance(message, dict):
        content = message.get("content")
        return content if isinstance(content, str) else ""
    text = choice.get("text")
    return text if isinstance(text, str) else ""


def token_logprobs(choice: dict[str, Any]) -> list[float] | None:
    """The logprob of each generated token, or None when the choice carries none.

    Completions: logprobs.token_logprobs (a null entry, e.g. an echoed first token, is
    skipped); chat: logprobs.content[].logprob."""
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, dict):
        return None
    if isinstance(logprobs.get("token_logprobs"), list):
        values = logprobs["token_logprobs"]
    elif isinstance(logprobs.get("content"), list):
        values = [e.get("logprob") for e in logprobs["content"] if isinstance(e, dict)]
    else:
        return None
    return [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]


def mean_token_logprob(choice: dict[str, Any]) -> float | None:
    values = token_logprobs(choice)
    if not values:
        return None
    return math.fsum(values) / len(values)


def _choice_fails(gate: CompiledGate, choice: dict[str, Any]) -> GateName | None:
    text = choice_text(choice)
    if gate.escalate_on_empty and not text.strip():
        return "empty"
    if gate.escalate_on_length and choice.get("finish_reason") == "length":
        return "length"
    if gate.reject_pattern is not None and gate.reject_pattern.search(text):
        return "pattern"
    if gate.min_mean_token_logprob is not None:
        mean = mean_token_logprob(choice)
        if mean is None or mean < gate.min_mean_token_logprob:
            return "logprob"
    return None


def failing_gate(gate: CompiledGate, answer: Any) -> GateName | None:
    """The first test the answer fails (on any of its choices), or None: it passes.
    An answer without choices is empty."""
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not isinstance(choices, list) or not choices:
        return "empty" if gate.escalate_on_empty else None
    for choice in choices:
        if isinstance(choice, dict) and (failed := _choice_fails(gate, choice)) is not None:
            return failed
    return None
