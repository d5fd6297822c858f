"""Engine logprobs -> OpenAI's two shapes (completions' parallel lists, chat's token objects)
and vLLM's prompt_logprobs.

Token strings and bytes come from TokenBytes (each token's real bytes, special tokens as the
text shows them); completions' text_offset comes from the detokenized text itself, so both
agree with the choice's text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llm_server.api.detokenize import text_offsets
from llm_server.api.generation import GeneratedToken
from llm_server.api.protocol import (
    ChatLogprobs,
    CompletionLogprobs,
    PromptLogprob,
    PromptLogprobs,
    TokenLogprob,
    TopLogprob,
)
from llm_server.api.token_bytes import TokenBytes
from llm_server.token_logprobs import TokenLogprobs


class LogprobFormatter:
    def __init__(self, tokenizer: Any, skip_special_tokens: bool = True) -> None:
        self._tokenizer = tokenizer
        self._skip_special_tokens = skip_special_tokens
        self.token_bytes = TokenBytes(tokenizer, skip_special_tokens)

    def token_text(self, token_id: int) -> str:
        return self.token_bytes.text(token_id)

    def completion(self, tokens: list[GeneratedToken], text_offset: int) -> CompletionLogprobs:
        result = CompletionLogprobs()
        for token in tokens:
            result.tokens.append(self.token_text(token.token_id))
            result.token_logprobs.append(None if token.logprob is None else _finite(token.logprob))
            top = {self.token_text(tid): _finite(lp) for tid, lp in token.top_logprobs}
            result.top_logprobs.append(top or None)
            result.text_offset.append(text_offset + token.text_offset)
        return result

    def echo(
        self,
        prompt_ids: list[int],
        entries: Sequence[TokenLogprobs | None],
        top_k: int,
    ) -> CompletionLogprobs:
        """The prompt's part of completions' logprobs (echo): the first token has none."""
        result = CompletionLogprobs()
        offsets = text_offsets(self._tokenizer, prompt_ids, self._skip_special_tokens)
        for token_id, entry, offset in zip(prompt_ids, entries, offsets, strict=True):
            result.tokens.append(self.token_text(token_id))
            result.text_offset.append(offset)
            if entry is None:
                result.token_logprobs.append(None)
                result.top_logprobs.append(None)
                continue
            result.token_logprobs.append(_finite(entry.logprob))
            top = {self.token_text(tid): _finite(lp) for tid, lp in entry.top_logprobs[:top_k]}
            result.top_logprobs.append(top or None)
        return result

    def prompt_logprobs(
        self, entries: Sequence[TokenLogprobs | None], top_k: int
    ) -> PromptLogprobs:
        """vLLM's shape: {token id: {logprob, rank, decoded_token}} with the prompt token and
        the top-k, per position; None for the first."""
        result: PromptLogprobs = []
        for entry in entries:
            if entry is None:
                result.append(None)
                continue
            position = {
                str(tid): PromptLogprob(
                    logprob=_finite(lp), rank=rank, decoded_token=self.token_text(tid)
                )
                for rank, (tid, lp) in enumerate(entry.top_logprobs[:top_k], start=1)
            }
            position[str(entry.token_id)] = PromptLogprob(
                logprob=_finite(entry.logprob),
                rank=entry.rank,
                decoded_token=self.token_text(entry.token_id),
            )
            result.append(position)
        return result

    def chat(self, tokens: list[GeneratedToken]) -> ChatLogprobs:
        return ChatLogprobs(content=[self._chat_token(token) for token in tokens])

    def _chat_token(self, token: GeneratedToken) -> TokenLogprob:
        return TokenLogprob(
            token=self.token_text(token.token_id),
            logprob=_finite(token.logprob),
            bytes=list(self.token_bytes(token.token_id)),
            top_logprobs=[
                TopLogprob(token=self.token_text(tid), logprob=_finite(lp),
                           bytes=list(self.token_bytes(tid)))
                for tid, lp in token.top_logprobs
            ],
        )  # fmt: skip


def _finite(logprob: float | None) -> float:
    """JSON has no -inf; OpenAI reports -9999.0 for impossible tokens."""
    if logprob is None or logprob != logprob or logprob == float("-inf"):
        return -9999.0
    return logprob
