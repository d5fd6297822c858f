"""Each token's real bytes, as logprobs report them.

Decoding one token on its own turns a piece of a multi-byte character (an emoji split over
two byte-level BPE tokens) into U+FFFD, whose UTF-8 is EF BF BD: joining those `bytes` would
not give the text back. So bytes come from the token's vocabulary entry: byte-level BPE
(GPT-2, Llama 3, Qwen, SmolLM) maps each byte to a printable character; SentencePiece writes
raw bytes as <0xNN> and spaces as U+2581. The token's display string is those bytes as UTF-8,
with a piece of a character shown as \\xNN (OpenAI's convention) rather than U+FFFD.
Special tokens follow the text: under skip_special_tokens they are empty, as in the text.
"""

from __future__ import annotations

import re
from functools import cache, lru_cache
from typing import Any

_SENTENCEPIECE_BYTE = re.compile(r"<0x([0-9A-Fa-f]{2})>")
_SENTENCEPIECE_SPACE = "\u2581"


@cache
def byte_level_alphabet() -> dict[str, int]:
    """GPT-2's printable character -> byte table (the inverse of its bytes_to_unicode)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(char): byte for byte, char in zip(printable, chars, strict=True)}


class TokenBytes:
    def __init__(self, tokenizer: Any, skip_special_tokens: bool = True) -> None:
        self._tokenizer = tokenizer
        self._skip_special = skip_special_tokens
        self._special = set(getattr(tokenizer, "all_special_ids", ()) or ())
        added = getattr(tokenizer, "added_tokens_decoder", None) or {}
        self._added = {int(i): str(getattr(t, "content", t)) for i, t in added.items()}
        self._special |= {int(i) for i, t in added.items() if getattr(t, "special", False)}
        self._kind = _decoder_kind(tokenizer)
        self._bytes = lru_cache(maxsize=65536)(self._token_bytes)

    def __call__(self, token_id: int) -> bytes:
        return self._bytes(token_id)

    def _token_bytes(self, token_id: int) -> bytes:
        if token_id in self._special:
            return b"" if self._skip_special else self._added.get(token_id, "").encode()
        if token_id in self._added:  # added tokens are stored as plain text
            return self._added[token_id].encode()
        piece = self._piece(token_id)
        if piece is not None and self._kind == "byte_level":
            alphabet = byte_level_alphabet()
            if all(char in alphabet for char in piece):
                return bytes(alphabet[char] for char in piece)
        if piece is not None and self._kind == "sentencepiece":
            match = _SENTENCEPIECE_BYTE.fullmatch(piece)
            if match:
                return bytes([int(match.group(1), 16)])
            return piece.replace(_SENTENCEPIECE_SPACE, " ").encode()
        return str(self._tokenizer.decode([token_id], skip_special_tokens=False)).encode()

    def text(self, token_id: int) -> str:
        return self(token_id).decode("utf-8", errors="backslashreplace")

    def _piece(self, token_id: int) -> str | None:
        convert = getattr(self._tokenizer, "convert_ids_to_tokens", None)
        piece = convert(token_id) if convert is not None else None
        return piece if isinstance(piece, str) else None


def _decoder_kind(tokenizer: Any) -> str:
    """'byte_level', 'sentencepiece' or 'other', from the fast tokenizer's decoder."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = str(getattr(backend, "decoder", "") or "")
    if "ByteLevel" in decoder:
        return "byte_level"
    if "ByteFallback" in decoder or "Metaspace" in decoder or _SENTENCEPIECE_SPACE in decoder:
        return "sentencepiece"
    return "other"
