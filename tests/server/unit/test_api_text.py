"""Incremental detokenization and stop strings: the text a client sees, token by token."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

from llm_server.api.detokenize import IncrementalDetokenizer
from llm_server.api.stop_strings import StopStringMatcher


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path) -> Any:
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def stream_text(tokenizer: Any, prompt: list[int], ids: list[int]) -> list[str]:
    detokenizer = IncrementalDetokenizer(tokenizer, prompt)
    return [detokenizer.add(token) for token in ids] + [detokenizer.flush()]


@pytest.mark.parametrize("text", ["The quick brown fox.", "héllo wörld, 日本語 🙂 ok", " lead"])
def test_deltas_concatenate_to_the_decoded_text(tokenizer: Any, text: str) -> None:
    prompt = tokenizer.encode("Hello there")
    ids = tokenizer.encode(text)
    deltas = stream_text(tokenizer, prompt, ids)
    assert "".join(deltas) == text
    assert all("\ufffd" not in delta for delta in deltas)  # split characters are held back


def test_random_token_sequences_match_full_decode(tokenizer: Any) -> None:
    rng = random.Random(0)
    special = set(tokenizer.all_special_ids)
    vocab = [i for i in range(len(tokenizer)) if i not in special]
    for _ in range(50):
        ids = rng.choices(vocab, k=rng.randint(1, 30))
        full = tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        assert "".join(stream_text(tokenizer, [], ids)) == full


def test_special_tokens_are_not_shown(tokenizer: Any) -> None:
    ids = [*tokenizer.encode("ok"), tokenizer.convert_tokens_to_ids("<|im_end|>")]
    assert "".join(stream_text(tokenizer, [], ids)) == "ok"


def feed(matcher: StopStringMatcher, pieces: list[str]) -> str:
    out = "".join(matcher.add(piece) for piece in pieces)
    return out + matcher.flush()


def test_stop_string_split_across_tokens_is_never_emitted() -> None:
    matcher = StopStringMatcher(["STOP"])
    emitted = [matcher.add(piece) for piece in ["ab", "cS", "TO", "Pxyz"]]
    assert emitted == ["ab", "c", "", ""]
    assert "S" not in "".join(emitted) and matcher.matched and matcher.text == "abc"


def test_earliest_of_several_stop_strings_wins() -> None:
    matcher = StopStringMatcher(["world", "lo w"])
    assert feed(matcher, ["hel", "lo", " wor", "ld"]) == "hel"
    assert matcher.matched


def test_held_back_text_is_released_when_it_is_not_a_stop() -> None:
    matcher = StopStringMatcher(["abc"])
    assert matcher.add("xxab") == "xx"
    assert matcher.add("d") == "abd"
    assert matcher.flush() == "" and not matcher.matched
    no_stops = StopStringMatcher([])
    assert no_stops.add("abc") == "abc"
