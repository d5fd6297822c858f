"""Incremental detokenization: text deltas that concatenate to exactly the decoded output.

Decoding one token at a time is wrong for byte-level BPE (a character can span tokens) and for
SentencePiece (a token's leading space depends on its left neighbour), so each step decodes a
short window and emits only the new, complete suffix (the method vLLM and TGI use).
"""

from __future__ import annotations

from typing import Any

# Prompt tokens kept as left context so the first generated token decodes with its space.
_CONTEXT_TOKENS = 6
_INCOMPLETE = "\ufffd"


class IncrementalDetokenizer:
    def __init__(
        self, tokenizer: Any, prompt_token_ids: list[int], skip_special_tokens: bool = True
    ) -> None:
        self._tokenizer = tokenizer
        self._skip_special_tokens = skip_special_tokens
        self._ids = list(prompt_token_ids[-_CONTEXT_TOKENS:])
        self._prefix_offset = 0  # start of the decode window
        self._read_offset = len(self._ids)  # tokens before this are already emitted

    def _decode(self, ids: list[int]) -> str:
        return str(
            self._tokenizer.decode(
                ids,
                skip_special_tokens=self._skip_special_tokens,
                clean_up_tokenization_spaces=False,
            )
        )

    def add(self, token_id: int) -> str:
        """Append one token; return the text it completes (may be "" while a character is split)."""
        self._ids.append(token_id)
        prefix_text = self._decode(self._ids[self._prefix_offset : self._read_offset])
        window_text = self._decode(self._ids[self._prefix_offset :])
        if len(window_text) <= len(prefix_text) or window_text.endswith(_INCOMPLETE):
            return ""
        self._prefix_offset = self._read_offset
        self._read_offset = len(self._ids)
        return window_text[len(prefix_text) :]

    def flush(self) -> str:
        """At the end: whatever is still held back, replacement characters included."""
        prefix_text = self._decode(self._ids[self._prefix_offset : self._read_offset])
        window_text = self._decode(self._ids[self._prefix_offset :])
        self._prefix_offset = self._read_offset = len(self._ids)
        return window_text[len(prefix_text) :] if len(window_text) > len(prefix_text) else ""


def text_offsets(tokenizer: Any, token_ids: list[int], skip_special_tokens: bool) -> list[int]:
    """Where each token's text starts in the decoded text (a split character's first piece
    starts where the character does)."""
    detokenizer = IncrementalDetokenizer(tokenizer, [], skip_special_tokens)
    offsets, length = [], 0
    for token_id in token_ids:
        offsets.append(length)
        length += len(detokenizer.add(token_id))
    return offsets
