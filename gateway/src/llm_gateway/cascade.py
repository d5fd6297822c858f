"""A cascade step's request and the client's answer. Pure.

Each step is called non-streamed (the gate needs the whole answer), with the route's target
model and, when the gate reads logprobs, with logprobs asked (completions `logprobs: 1`, chat
`logprobs: true`); the answer the client gets has them taken out again unless it asked. A
client that asked to stream gets the chosen answer as server-sent events: one content chunk
per choice, a finish chunk, the usage chunk if it asked (`stream_options.include_usage`), and
`[DONE]`. Its time to first token is then the whole answer's time (docs/traffic.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ClientAsked:
    """What the client's own request asked for, which the step requests may differ from."""

    chat: bool  # /v1/chat/completions (else /v1/completions)
    stream: bool
    include_usage: bool  # stream_options.include_usage
    logprobs: bool


def client_asked(parsed: dict[str, Any], chat: bool) -> ClientAsked:
    options = parsed.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    logprobs = parsed.get("logprobs")
    asked = bool(logprobs) if chat else logprobs is not None and logprobs is not False
    return ClientAsked(chat, parsed.get("stream") is True, include_usage, asked)


def with_model(parsed: dict[str, Any], model: str) -> bytes:
    """The request as a target gets it: its own served model name."""
    return json.dumps({**parsed, "model": model}).encode()


def step_body(parsed: dict[str, Any], model: str, asked: ClientAsked, logprobs: bool) -> bytes:
    """A cascade step's request: non-streamed, for `model`, with logprobs when the gate
    needs them."""
    body = {k: v for k, v in parsed.items() if k not in ("stream", "stream_options")}
    body["model"] = model
    if logprobs and not asked.logprobs:
        body["logprobs"] = True if asked.chat else 1
    return json.dumps(body).encode()


def client_answer(answer: dict[str, Any], asked: ClientAsked) -> dict[str, Any]:
    """The chosen answer without the logprobs the client did not ask for."""
    if asked.logprobs:
        return answer
    choices = answer.get("choices")
    if not isinstance(choices, list):
        return answer
    stripped = [{**c, "logprobs": None} if isinstance(c, dict) else c for c in choices]
    return {**answer, "choices": stripped}


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def _chat_delta(choice: dict[str, Any]) -> dict[str, Any]:
    found = choice.get("message")
    message: dict[str, Any] = found if isinstance(found, dict) else {}
    delta: dict[str, Any] = {"role": message.get("role", "assistant")}
    if message.get("content") is not None:
        delta["content"] = message["content"]
    if isinstance(message.get("tool_calls"), list):
        delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
    return delta


def sse_events(answer: dict[str, Any], asked: ClientAsked) -> bytes:
    """The answer as the stream the client asked for (answer already client_answer'ed)."""
    head = {
        "id": answer.get("id", ""),
        "object": "chat.completion.chunk" if asked.chat else "text_completion",
        "created": answer.get("created", 0),
        "model": answer.get("model", ""),
    }
    choices = [c for c in answer.get("choices") or [] if isinstance(c, dict)]
    events: list[bytes] = []
    for choice in choices:
        index = choice.get("index", 0)
        logprobs = choice.get("logprobs")
        if asked.chat:
            content: dict[str, Any] = {"index": index, "delta": _chat_delta(choice)}
            end: dict[str, Any] = {"index": index, "delta": {}}
        else:
            content = {"index": index, "text": choice.get("text") or ""}
            end = {"index": index, "text": ""}
        content.update(logprobs=logprobs, finish_reason=None)
        end.update(logprobs=None, finish_reason=choice.get("finish_reason"))
        events.append(_event({**head, "choices": [content]}))
        events.append(_event({**head, "choices": [end]}))
    if asked.include_usage and answer.get("usage") is not None:
        events.append(_event({**head, "choices": [], "usage": answer["usage"]}))
    events.append(b"data: [DONE]\n\n")
    return b"".join(events)
