"""Each token's real bytes (byte-level BPE and SentencePiece-style pieces), and stop strings
with include_stop_str_in_output and min_tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from transformers import AutoTokenizer

from llm_server.api.stop_strings import StopStringMatcher
from llm_server.api.token_bytes import TokenBytes

REPLACEMENT = "\ufffd".encode()


def test_byte_level_tokens_give_their_real_bytes(tiny_model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = "Hi 😀 there, naïve café ☃"
    ids = tokenizer.encode(text, add_special_tokens=False)
    token_bytes = TokenBytes(tokenizer)
    pieces = [token_bytes(token_id) for token_id in ids]
    assert b"".join(pieces) == text.encode()
    assert not any(REPLACEMENT in piece for piece in pieces)
    assert any("\\x" in token_bytes.text(token_id) for token_id in ids)  # a split character
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert token_bytes(eos) == b"" and TokenBytes(tokenizer, False)(eos) == b"<|im_end|>"


class PieceTokenizer:
    """SentencePiece-style vocabulary: U+2581 for spaces, <0xNN> for raw bytes."""

    all_special_ids: ClassVar[list[int]] = []
    backend_tokenizer: Any = type("Backend", (), {"decoder": "Sequence(ByteFallback, Fuse)"})()
    pieces: ClassVar[dict[int, str]] = {0: "\u2581Hi", 1: "<0xF0>", 2: "<0x9F>", 3: "<0x98>",
                                        4: "<0x80>"}  # fmt: skip

    def convert_ids_to_tokens(self, token_id: int) -> str:
        return self.pieces[token_id]


def test_sentencepiece_byte_fallback_pieces() -> None:
    token_bytes = TokenBytes(PieceTokenizer())
    assert b"".join(token_bytes(i) for i in range(5)) == " Hi😀".encode()


def test_stop_string_kept_when_asked() -> None:
    kept = StopStringMatcher(["."], include_stop=True)
    assert kept.add("Paris. Then") == "Paris." and kept.matched
    cut = StopStringMatcher(["."])
    assert cut.add("Paris. Then") == "Paris" and cut.matched


def test_stop_strings_wait_for_min_tokens() -> None:
    matcher = StopStringMatcher(["."])
    assert matcher.add("a. b", searchable=False) == "a. b"  # before min_tokens: no match
    assert not matcher.matched
    assert matcher.add(" c.", searchable=True) == " c" and matcher.matched
