"""The cascade benchmark's arithmetic: each system's dollars and accuracy from answers already
collected, and the frontier over gate thresholds. Pure (no servers, no clock).

Every question is answered once by the cheap and once by the large deployment (greedy, so
an answer is the same whether the gateway or this file asks); a cascade at any threshold is
then exact arithmetic: the cheap answer, the real gate (`llm_gateway.gates`) on it, and the
large answer where the gate fails it. Dollars follow the gateway's route metrics: every
attempt's prompt + completion tokens times its deployment's $/1M tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from llm_gateway.gates import CompiledGate, failing_gate
from llm_operator.api.route import Gate


@dataclass(frozen=True)
class Answer:
    """One deployment's answer to one question."""

    text: str
    finish_reason: str
    token_logprobs: tuple[float, ...]
    prompt_tokens: int
    completion_tokens: int
    correct: bool

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_chat_answer(self) -> dict[str, Any]:
        """The shape the gateway's gate reads (a chat completion with logprobs)."""
        content = [{"logprob": value} for value in self.token_logprobs]
        choice = {
            "message": {"role": "assistant", "content": self.text},
            "finish_reason": self.finish_reason,
            "logprobs": {"content": content},
        }
        return {"choices": [choice]}


@dataclass(frozen=True)
class Pair:
    """A question's cheap and large answers."""

    category: str
    cheap: Answer
    large: Answer


@dataclass(frozen=True)
class Outcome:
    requests: int
    accuracy: float  # fraction correct
    dollars_per_1k: float
    escalation_rate: float


def gate_for(threshold: float | None) -> CompiledGate:
    """The gate the benchmark's route declares: empty, length, and the mean logprob (None:
    no logprob test)."""
    return CompiledGate.of(Gate(min_mean_token_logprob=threshold))


def always(pairs: list[Pair], which: str, price: float) -> Outcome:
    """Every question to one deployment (`which` is "cheap" or "large"); price in $/1M."""
    answers = [getattr(p, which) for p in pairs]
    return _outcome(
        len(pairs),
        sum(a.correct for a in answers),
        sum(a.tokens for a in answers) * price,
        0,
    )


def cascade(
    pairs: list[Pair], gate: CompiledGate, cheap_price: float, large_price: float
) -> Outcome:
    correct = escalated = 0
    dollars_e6 = 0.0  # dollars x 1e6 (prices are per 1M tokens)
    for pair in pairs:
        dollars_e6 += pair.cheap.tokens * cheap_price
        if failing_gate(gate, pair.cheap.as_chat_answer()) is None:
            correct += pair.cheap.correct
            continue
        escalated += 1
        dollars_e6 += pair.large.tokens * large_price
        correct += pair.large.correct
    return _outcome(len(pairs), correct, dollars_e6, escalated)


def _outcome(requests: int, correct: int, dollars_e6: float, escalated: int) -> Outcome:
    if requests == 0:
        return Outcome(0, 0.0, 0.0, 0.0)
    return Outcome(
        requests,
        correct / requests,
        dollars_e6 / 1e6 / requests * 1000,
        escalated / requests,
    )


def mean_logprob(answer: Answer) -> float:
    values = answer.token_logprobs
    return math.fsum(values) / len(values) if values else -math.inf


def candidate_thresholds(pairs: list[Pair]) -> list[float | None]:
    """None (no logprob test) and every distinct cheap answer's mean logprob, nudged up so
    that answer escalates: the cascade changes only at these points, so the frontier is exact."""
    means = sorted({mean_logprob(p.cheap) for p in pairs if p.cheap.token_logprobs})
    return [None, *(min(0.0, math.nextafter(m, math.inf)) for m in means)]


def pick_threshold(
    tuning: list[Pair], cheap_price: float, large_price: float, max_loss: float = 0.01
) -> float | None:
    """The cheapest threshold whose tuning accuracy is within `max_loss` of always-large's
    (ties: the higher accuracy); the strictest candidate when none is."""
    target = always(tuning, "large", large_price).accuracy - max_loss
    best: tuple[float, float, float | None] | None = None  # (dollars, -accuracy, threshold)
    candidates = candidate_thresholds(tuning)
    for threshold in candidates:
        result = cascade(tuning, gate_for(threshold), cheap_price, large_price)
        if result.accuracy + 1e-12 < target:
            continue
        key = (result.dollars_per_1k, -result.accuracy, threshold)
        if best is None or key[:2] < best[:2]:
            best = key
    return best[2] if best is not None else candidates[-1]


def frontier(
    pairs: list[Pair], thresholds: list[float | None], cheap_price: float, large_price: float
) -> list[tuple[float | None, Outcome]]:
    return [(t, cascade(pairs, gate_for(t), cheap_price, large_price)) for t in thresholds]


def pareto(points: list[tuple[float | None, Outcome]]) -> list[tuple[float | None, Outcome]]:
    """The points no other point beats on both dollars (lower) and accuracy (higher)."""
    ordered = sorted(points, key=lambda p: (p[1].dollars_per_1k, -p[1].accuracy))
    kept: list[tuple[float | None, Outcome]] = []
    for point in ordered:
        if not kept or point[1].accuracy > kept[-1][1].accuracy:
            kept.append(point)
    return kept
