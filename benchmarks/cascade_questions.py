"""The cascade benchmark's labelled questions: generated from a seed, answers known, scored by
exact match after normalizing (the answer's first number, or its first word). Pure.

Four categories, equally many items each: arithmetic (one- and two-digit), capitals of
well-known countries (single-word capitals only, so "first word" is the whole answer), unit
conversions (whole numbers), and sequences (the next number of an arithmetic progression).
The shuffled set is split once: the first `tuning_fraction` is where thresholds are picked,
the rest is where figures are reported.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

Kind = Literal["number", "word"]
T = TypeVar("T")
CATEGORIES = ("arithmetic", "capital", "conversion", "sequence")

# Countries whose capital is one word (the scorer compares the first word).
CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome",
    "Japan": "Tokyo", "China": "Beijing", "Russia": "Moscow", "Egypt": "Cairo",
    "Canada": "Ottawa", "Australia": "Canberra", "Greece": "Athens", "Portugal": "Lisbon",
    "Austria": "Vienna", "Norway": "Oslo", "Sweden": "Stockholm", "Finland": "Helsinki",
    "Denmark": "Copenhagen", "Poland": "Warsaw", "Ireland": "Dublin", "Belgium": "Brussels",
    "Netherlands": "Amsterdam", "Hungary": "Budapest", "Turkey": "Ankara", "Kenya": "Nairobi",
    "Peru": "Lima", "Thailand": "Bangkok", "Cuba": "Havana", "Chile": "Santiago",
    "Iran": "Tehran", "Iraq": "Baghdad", "Indonesia": "Jakarta", "Ukraine": "Kyiv",
    "Czechia": "Prague", "Romania": "Bucharest", "Switzerland": "Bern", "Argentina": "Buenos",
    "Colombia": "Bogota", "Venezuela": "Caracas", "Philippines": "Manila", "Vietnam": "Hanoi",
}  # fmt: skip
del CAPITALS["Argentina"]  # "Buenos Aires": two words

CAPITAL_TEMPLATES = (
    "What is the capital of {country}?",
    "What is the capital city of {country}?",
    "Which city is the capital of {country}?",
)

# (question template, multiplier): "How many X are in N Y?" -> N * multiplier
CONVERSIONS = (
    ("How many centimeters are in {n} meters?", 100),
    ("How many minutes are in {n} hours?", 60),
    ("How many grams are in {n} kilograms?", 1000),
    ("How many seconds are in {n} minutes?", 60),
    ("How many millimeters are in {n} centimeters?", 10),
    ("How many days are in {n} weeks?", 7),
    ("How many hours are in {n} days?", 24),
    ("How many months are in {n} years?", 12),
)

NUMBER_SUFFIX = " Answer with the number only."
WORD_SUFFIX = " Answer with one word only."


# Two worked examples before each question: without them the 135M model answers in sentences
# ("The capital of France is Paris."), which no first-word scorer reads. (Five examples, one
# per format, were worse in a smoke run: it copied their answers.) Neither can be generated.
FEW_SHOT = (
    ("What is 0 plus 4?" + NUMBER_SUFFIX, "4"),
    ("What is the capital of Spain?" + WORD_SUFFIX, "Madrid"),
)


@dataclass(frozen=True)
class Question:
    id: int
    category: str
    prompt: str
    answer: str
    kind: Kind

    def messages(self) -> list[dict[str, Any]]:
        """The chat messages sent: the worked examples, then the question."""
        shots = [
            message
            for question, answer in FEW_SHOT
            for message in (
                {"role": "user", "content": question},
                {"role": "assistant", "content": answer},
            )
        ]
        return [*shots, {"role": "user", "content": self.prompt}]


def _arithmetic(rng: random.Random) -> tuple[str, str]:
    op = rng.choice("+-*")
    digits = rng.choice((1, 2)) if op != "*" else 1
    low, high = (1, 9) if digits == 1 else (10, 99)
    a, b = rng.randint(low, high), rng.randint(low, high)
    if op == "-" and b > a:
        a, b = b, a
    value = a + b if op == "+" else a - b if op == "-" else a * b
    word = {"+": "plus", "-": "minus", "*": "times"}[op]
    return f"What is {a} {word} {b}?", str(value)


def _capital(rng: random.Random) -> tuple[str, str]:
    country = rng.choice(sorted(CAPITALS))
    return rng.choice(CAPITAL_TEMPLATES).format(country=country), CAPITALS[country]


def _conversion(rng: random.Random) -> tuple[str, str]:
    template, multiplier = rng.choice(CONVERSIONS)
    n = rng.randint(2, 20)
    return template.format(n=n), str(n * multiplier)


def _sequence(rng: random.Random) -> tuple[str, str]:
    start, step = rng.randint(1, 30), rng.randint(1, 5)
    shown = ", ".join(str(start + step * i) for i in range(4))
    return f"What number comes next: {shown}, ?", str(start + step * 4)


_MAKERS = {
    "arithmetic": (_arithmetic, "number"),
    "capital": (_capital, "word"),
    "conversion": (_conversion, "number"),
    "sequence": (_sequence, "number"),
}


def build_questions(per_category: int, seed: int = 23) -> list[Question]:
    """`per_category` distinct questions of each category, shuffled by `seed`."""
    rng = random.Random(seed)
    items: list[tuple[str, str, str, Kind]] = []
    for category in CATEGORIES:
        maker, default_kind = _MAKERS[category]
        seen: set[str] = set()
        for _ in range(per_category * 50):  # bounded: the capitals run out of distinct ones
            if len(seen) == per_category:
                break
            text, answer = maker(rng)
            if text in seen:
                continue
            seen.add(text)
            kind: Kind = default_kind  # type: ignore[assignment]
            suffix = NUMBER_SUFFIX if kind == "number" else WORD_SUFFIX
            items.append((category, text + suffix, answer, kind))
    rng.shuffle(items)
    return [Question(i, c, p, a, k) for i, (c, p, a, k) in enumerate(items)]


def split(items: list[T], tuning_fraction: float = 0.4) -> tuple[list[T], list[T]]:
    """(tuning, test): disjoint, by position in the shuffled set (questions, or what was
    collected for them in the same order)."""
    cut = round(len(items) * tuning_fraction)
    return items[:cut], items[cut:]


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_WORD = re.compile(r"[^\W\d_]+")


def normalize(text: str, kind: Kind) -> str | None:
    """The answer's first number (without a trailing .0, commas removed) or its first word
    (lower case); None when there is none. A worked equation ("4 * 60 = 240") answers with
    what follows its last "="."""
    if "=" in text:
        text = text.rsplit("=", 1)[1]
    if kind == "number":
        match = _NUMBER.search(text.replace(",", ""))
        if match is None:
            return None
        value = float(match.group())
        return str(int(value)) if value.is_integer() else str(value)
    match = _WORD.search(text)
    return match.group().lower() if match else None


def is_correct(question: Question, text: str) -> bool:
    return normalize(text, question.kind) == normalize(question.answer, question.kind)
