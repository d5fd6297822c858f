"""What the gateway reads from a request body: the model, streaming, and the affinity text.

Only these fields are parsed; the raw bytes go upstream unchanged, so the replica validates the
rest and answers in its own words.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


class BadRequest(ValueError):
    """The body is not a JSON object with a string `model` (an OpenAI-style 400)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class RoutingFields:
    model: str
    stream: bool
    prefix: str  # the prompt's leading characters: what requests sharing a cache share


def _content_text(content: Any) -> str:
    """A chat message's content: a string, or the text of its parts (images etc. skipped)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _chat_prefix(messages: Any, limit: int) -> str:
    if not isinstance(messages, list):
        return ""
    pieces: list[str] = []
    length = 0
    # Role and content, in order: a shared system prompt or a conversation's earlier turns
    # give the same leading text, so they hash to the same replica.
    for message in messages:
        if not isinstance(message, dict):
            continue
        piece = f"{message.get('role', '')}\n{_content_text(message.get('content'))}\n"
        pieces.append(piece)
        length += len(piece)
        if length >= limit:
            break
    return "".join(pieces)[:limit]


def _completion_prefix(prompt: Any, limit: int) -> str:
    if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int):
        prompt = prompt[0]  # a batch: its first prompt decides
    if isinstance(prompt, str):
        return prompt[:limit]
    if isinstance(prompt, list):  # token ids: about four characters a token
        return ",".join(str(token) for token in prompt[: max(1, limit // 4)])
    return ""


def routing_fields(body: bytes, prefix_chars: int) -> RoutingFields:
    try:
        parsed = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise BadRequest("The request body must be a JSON object.")
    model = parsed.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("You must provide a model parameter.", param="model")
    if "messages" in parsed:
        prefix = _chat_prefix(parsed["messages"], prefix_chars)
    else:
        prefix = _completion_prefix(parsed.get("prompt"), prefix_chars)
    return RoutingFields(model=model, stream=parsed.get("stream") is True, prefix=prefix)
