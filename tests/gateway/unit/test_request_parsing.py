"""What the gateway reads from a body: model, stream, and the affinity prefix."""

from __future__ import annotations

import json

import pytest

from llm_gateway.request_key import BadRequest, routing_fields

SYSTEM = "You are a helpful assistant for ACME's billing questions. " * 6


def chat(*messages: tuple[str, str], **extra: object) -> bytes:
    body = {"model": "m", "messages": [{"role": r, "content": c} for r, c in messages], **extra}
    return json.dumps(body).encode()


def test_a_shared_system_prompt_gives_the_same_prefix() -> None:
    first = routing_fields(chat(("system", SYSTEM), ("user", "my invoice?")), 256)
    second = routing_fields(chat(("system", SYSTEM), ("user", "a refund")), 256)
    assert first.prefix == second.prefix and len(first.prefix) == 256
    other = routing_fields(chat(("system", "Another bot. " * 30), ("user", "my invoice?")), 256)
    assert other.prefix != first.prefix


def test_a_conversation_keeps_its_prefix_as_it_grows() -> None:
    turns = [("user", "Tell me about the history of Rome in detail, please. " * 6)]
    short = routing_fields(chat(*turns), 256)
    longer = routing_fields(chat(*turns, ("assistant", "Rome was..."), ("user", "more")), 256)
    assert short.prefix == longer.prefix


def test_roles_count_and_content_parts_are_read_as_text() -> None:
    as_user = routing_fields(chat(("user", "hello")), 256)
    as_system = routing_fields(chat(("system", "hello")), 256)
    assert as_user.prefix != as_system.prefix
    parts = [{"type": "text", "text": "hel"}, {"type": "image_url", "image_url": {}},
             {"type": "text", "text": "lo"}]  # fmt: skip
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": parts}]}).encode()
    assert routing_fields(body, 256).prefix == as_user.prefix


@pytest.mark.parametrize(
    ("prompt", "prefix"),
    [("abcdef", "abcd"), (["abcdef", "zzz"], "abcd"), ([1, 2, 3], "1"), (None, "")],
)
def test_completion_prompts(prompt: object, prefix: str) -> None:
    body = json.dumps({"model": "m", "prompt": prompt, "stream": True}).encode()
    fields = routing_fields(body, 4)
    assert fields.prefix == prefix and fields.stream is True and fields.model == "m"


@pytest.mark.parametrize(
    ("raw", "param"),
    [(b"{", None), (b"\xff\xfe", None), (b'"text"', None), (b"{}", "model"),
     (b'{"model": ""}', "model"), (b'{"model": ["m"]}', "model")],
)  # fmt: skip
def test_bad_bodies(raw: bytes, param: str | None) -> None:
    with pytest.raises(BadRequest) as raised:
        routing_fields(raw, 256)
    assert raised.value.param == param


def test_stream_must_be_true_to_count() -> None:
    assert routing_fields(b'{"model": "m", "stream": "yes"}', 8).stream is False
