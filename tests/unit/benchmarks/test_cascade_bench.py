"""The cascade benchmark's pure parts (benchmarks/cascade_questions.py, cascade_frontier.py):
the seeded question set and its answers, the scorer, the split, and the cascade arithmetic
with the gateway's own gate. No server."""

from __future__ import annotations

import itertools
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
from cascade_frontier import (
    Answer,
    Pair,
    always,
    candidate_thresholds,
    cascade,
    gate_for,
    pareto,
    pick_threshold,
)
from cascade_gateway import ROUTE, simulated, static_models
from cascade_questions import (
    CAPITALS,
    CATEGORIES,
    FEW_SHOT,
    Kind,
    Question,
    build_questions,
    is_correct,
    normalize,
    split,
)
from cascade_report import oracle, separation
from llm_gateway.static_models import parse_static_config


def test_questions_are_seeded_distinct_and_balanced() -> None:
    questions = build_questions(100, seed=23)
    assert questions == build_questions(100, seed=23)
    assert questions != build_questions(100, seed=24)
    assert len(questions) == 400
    assert len({q.prompt for q in questions}) == 400
    for category in CATEGORIES:
        assert sum(q.category == category for q in questions) == 100
    assert [q.id for q in questions] == list(range(400))
    assert not {prompt for prompt, _ in FEW_SHOT} & {q.prompt for q in questions}


def _expected(question: Question) -> str:
    """The answer worked out again from the prompt's text."""
    text = question.prompt
    if question.category == "arithmetic":
        a, word, b = re.match(r"What is (\d+) (plus|minus|times) (\d+)\?", text).groups()  # type: ignore[union-attr]
        x, y = int(a), int(b)
        return str({"plus": x + y, "minus": x - y, "times": x * y}[word])
    if question.category == "sequence":
        terms = [int(t) for t in re.findall(r"\d+", text.split("?")[0])]
        assert len({b - a for a, b in itertools.pairwise(terms)}) == 1
        return str(terms[-1] + terms[1] - terms[0])
    if question.category == "conversion":
        n = int(re.search(r"in (\d+) ", text).group(1))  # type: ignore[union-attr]
        unit = re.match(r"How many (\w+)", text).group(1)  # type: ignore[union-attr]
        per = {"centimeters": 100, "minutes": 60, "grams": 1000, "seconds": 60,
               "millimeters": 10, "days": 7, "hours": 24, "months": 12}  # fmt: skip
        return str(n * per[unit])
    country = re.search(r"of (\w+)\?", text).group(1)  # type: ignore[union-attr]
    return str(CAPITALS[country])


def test_every_answer_is_what_the_question_asks() -> None:
    for question in build_questions(100):
        assert question.answer == _expected(question), question
        assert is_correct(question, question.answer)
        assert question.kind == ("word" if question.category == "capital" else "number")
        assert question.messages()[-1] == {"role": "user", "content": question.prompt}
        assert " " not in question.answer  # the scorer reads one number or one word


@pytest.mark.parametrize(
    ("text", "kind", "normalized"),
    [
        ("Paris.", "word", "paris"),
        ("  paris\n", "word", "paris"),
        ("The capital is Paris.", "word", "the"),  # first word: a sentence is not an answer
        ("240", "number", "240"),
        ("4 * 60 = 240", "number", "240"),
        ("1,000 grams", "number", "1000"),
        ("15.0", "number", "15"),
        ("-3", "number", "-3"),
        ("2.5", "number", "2.5"),
        ("none", "number", None),
        ("", "word", None),
    ],
)
def test_normalize(text: str, kind: Kind, normalized: str | None) -> None:
    assert normalize(text, kind) == normalized


def test_scorer_is_exact_after_normalizing() -> None:
    question = Question(0, "arithmetic", "What is 8 plus 7?", "15", "number")
    assert is_correct(question, "15")
    assert is_correct(question, "8 + 7 = 15")
    assert not is_correct(question, "150")
    assert not is_correct(question, "1 5")
    assert is_correct(question, "The answer is 15")  # the first number counts
    assert not is_correct(question, "7 + 8 is 15")
    capital = Question(1, "capital", "What is the capital of Peru?", "Lima", "word")
    assert is_correct(capital, "Lima") and is_correct(capital, "lima.")
    assert not is_correct(capital, "Limassol")


def test_split_is_disjoint_and_complete() -> None:
    questions = build_questions(10)
    tuning, test = split(questions, 0.4)
    assert len(tuning) == 16 and len(test) == 24
    assert tuning + test == questions


def _answer(correct: bool, mean: float, tokens: int = 10, finish: str = "stop") -> Answer:
    return Answer("x", finish, (mean, mean), tokens - 2, 2, correct)


# cheap answers: confident and right, unsure and wrong, cut off; large always right
PAIRS = [
    Pair("a", _answer(True, -0.1), _answer(True, -0.1, tokens=20)),
    Pair("a", _answer(False, -2.0), _answer(True, -0.1, tokens=20)),
    Pair("a", _answer(True, -0.2, finish="length"), _answer(True, -0.1, tokens=20)),
    Pair("a", _answer(True, -0.5), _answer(True, -0.1, tokens=20)),
]


def test_cascade_arithmetic_follows_the_gate() -> None:
    cheap_price, large_price = 1.0, 3.0  # $/1M tokens
    large = always(PAIRS, "large", large_price)
    assert large.accuracy == 1.0 and large.escalation_rate == 0.0
    assert large.dollars_per_1k == pytest.approx(20 * 3.0 / 1e6 * 1000)
    # no logprob test: only the cut-off answer escalates (length)
    no_logprob = cascade(PAIRS, gate_for(None), cheap_price, large_price)
    assert no_logprob.escalation_rate == 0.25
    assert no_logprob.accuracy == 0.75
    assert no_logprob.dollars_per_1k == pytest.approx((4 * 10 + 20 * 3) / 4 / 1e6 * 1000)
    # threshold -1.0: the unsure answer escalates too, and the large one is right
    gated = cascade(PAIRS, gate_for(-1.0), cheap_price, large_price)
    assert (gated.accuracy, gated.escalation_rate) == (1.0, 0.5)
    assert gated.dollars_per_1k == pytest.approx((4 * 10 + 2 * 20 * 3) / 4 / 1e6 * 1000)


def test_the_oracle_gate_escalates_exactly_what_the_large_one_fixes() -> None:
    ceiling = oracle(PAIRS, 1.0, 3.0)
    assert (ceiling.accuracy, ceiling.escalation_rate) == (1.0, 0.25)
    assert ceiling.dollars_per_1k == pytest.approx((4 * 10 + 20 * 3) / 4 / 1e6 * 1000)
    assert separation(PAIRS)["only_large_right"] == 0.25


def test_threshold_picked_is_the_cheapest_within_a_point() -> None:
    assert pick_threshold(PAIRS, 1.0, 3.0, max_loss=0.01) == pytest.approx(-2.0, abs=1e-9)
    # a 25-point loss is allowed: no logprob test at all is cheapest
    assert pick_threshold(PAIRS, 1.0, 3.0, max_loss=0.25) is None


def test_candidates_make_the_frontier_exact() -> None:
    candidates = candidate_thresholds(PAIRS)
    assert candidates[0] is None
    assert len(candidates) == 1 + 4  # one per distinct cheap mean logprob
    escalations = [cascade(PAIRS, gate_for(t), 1.0, 3.0).escalation_rate for t in candidates]
    # each candidate escalates the answer at its mean (the cut-off one already escalates)
    assert escalations == [0.25, 0.5, 0.75, 0.75, 1.0]
    points = [(t, cascade(PAIRS, gate_for(t), 1.0, 3.0)) for t in candidates]
    kept = pareto(points)
    assert [round(o.accuracy, 2) for _, o in kept] == [0.75, 1.0]
    assert kept[0][0] is None


def test_the_gateway_check_route_is_what_the_gateway_parses() -> None:
    urls = {"cheap": "http://127.0.0.1:1", "large": "http://127.0.0.1:2"}
    config = parse_static_config(static_models(urls, {"cheap": 1.0, "large": 3.0}, -1.0))
    prices = {t.deployment: t.dollars_per_million_tokens for t in config.targets}
    assert prices == {"cheap": 1.0, "large": 3.0}
    route = config.routes.get_route(ROUTE)
    assert route is not None and route.gate == gate_for(-1.0)
    # what the gateway should answer and charge: the same arithmetic as the frontier
    expected = simulated(PAIRS, {"cheap": 1.0, "large": 3.0}, -1.0)
    assert expected["escalations"] == 2
    assert expected["dollars"] == pytest.approx((4 * 10 + 2 * 20 * 3) / 1e6)
    assert expected["direct_dollars"] == pytest.approx((2 * 10 + 2 * 20) * 3 / 1e6)
