"""Engine logprobs -> OpenAI's two shapes (completions' parallel lists, chat's token objects)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from llm_server.api.generation import GeneratedToken
from llm_server.api.protocol import ChatLogprobs, CompletionLogprobs, TokenLogprob, TopLogprob


class LogprobFormatter:
    def __init__(self, tokenizer: Any) -> None:
        # Single-token decoding is what vLLM reports too; a split UTF-8 character shows as U+FFFD.
        self.token_text = lru_cache(maxsize=65536)(
            lambda token_id: str(tokenizer.decode([token_id]))
        )

    def completion(self, tokens: list[GeneratedToken], text_offset: int) -> CompletionLogprobs:
        result = CompletionLogprobs()
        offset = text_offset
        for token in tokens:
            text = self.token_text(token.token_id)
            result.tokens.append(text)
            result.token_logprobs.append(None if token.logprob is None else _finite(token.logprob))
            top = {self.token_text(tid): _finite(lp) for tid, lp in token.top_logprobs}
            result.top_logprobs.append(top or None)
            result.text_offset.append(offset)
            offset += len(text)
        return result

    def chat(self, tokens: list[GeneratedToken]) -> ChatLogprobs:
        return ChatLogprobs(content=[self._chat_token(token) for token in tokens])

    def _chat_token(self, token: GeneratedToken) -> TokenLogprob:
        text = self.token_text(token.token_id)
        return TokenLogprob(
            token=text,
            logprob=_finite(token.logprob),
            bytes=list(text.encode()),
            top_logprobs=[
                TopLogprob(token=self.token_text(tid), logprob=_finite(lp),
                           bytes=list(self.token_text(tid).encode()))
                for tid, lp in token.top_logprobs
            ],
        )  # fmt: skip


def _finite(logprob: float | None) -> float:
    """JSON has no -inf; OpenAI reports -9999.0 for impossible tokens."""
    if logprob is None or logprob != logprob or logprob == float("-inf"):
        return -9999.0
    return logprob
