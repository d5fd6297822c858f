"""Reading `usage` from relayed answers; asking for it in streams and taking it out again."""

from __future__ import annotations

import json

import pytest

from llm_gateway.usage import BodyUsage, StreamUsage, Usage, ask_for_usage, estimate_tokens

USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


def event(payload: dict[str, object], spaced: bool = False) -> bytes:
    text = json.dumps(payload) if spaced else json.dumps(payload, separators=(",", ":"))
    return b"data: " + text.encode() + b"\n\n"


def content(text: str, usage: bool, finish: str | None = None) -> dict[str, object]:
    chunk: dict[str, object] = {
        "id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}],
    }  # fmt: skip
    if usage:
        chunk["usage"] = None  # what a server sends in every chunk once include_usage is on
    return chunk


def usage_event() -> dict[str, object]:
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [], "usage": USAGE}  # fmt: skip


def stream(include_usage: bool, spaced: bool = False) -> bytes:
    events = [content("one ", include_usage), content("two", include_usage, "stop")]
    if include_usage:
        events.append(usage_event())
    return b"".join(event(e, spaced) for e in events) + b"data: [DONE]\n\n"


def relay(observer: StreamUsage | BodyUsage, data: bytes, piece: int) -> bytes:
    out = [observer.feed(data[i : i + piece]) for i in range(0, len(data), piece)]
    return b"".join(out) + observer.finish()


@pytest.mark.parametrize("piece", [1, 7, 64, 100_000])
@pytest.mark.parametrize("spaced", [False, True])
def test_stream_usage_is_read_and_taken_out_when_the_client_did_not_ask(
    piece: int, spaced: bool
) -> None:
    observer = StreamUsage(client_asked=False)
    relayed = relay(observer, stream(include_usage=True, spaced=spaced), piece)
    assert observer.usage == Usage(11, 7)
    # Byte for byte what the server sends without include_usage.
    assert relayed == stream(include_usage=False, spaced=spaced)


@pytest.mark.parametrize("piece", [3, 100_000])
def test_stream_usage_is_kept_when_the_client_asked(piece: int) -> None:
    observer = StreamUsage(client_asked=True)
    upstream = stream(include_usage=True)
    assert relay(observer, upstream, piece) == upstream
    assert observer.usage == Usage(11, 7)


def test_stream_without_usage_passes_unchanged_and_reads_none() -> None:
    observer = StreamUsage(client_asked=False)
    upstream = stream(include_usage=False)
    assert relay(observer, upstream, 5) == upstream
    assert observer.usage is None


def test_stream_relays_whole_events_at_once_and_holds_only_a_partial_one() -> None:
    observer = StreamUsage(client_asked=True)
    first = event(content("one ", True))
    assert observer.feed(first + first[:10]) == first
    assert observer.feed(first[10:]) == first


def test_stream_with_crlf_event_ends() -> None:
    observer = StreamUsage(client_asked=False)
    upstream = stream(include_usage=True).replace(b"\n", b"\r\n")
    relayed = relay(observer, upstream, 100_000)
    assert observer.usage == Usage(11, 7)
    assert b'"usage"' not in relayed and relayed.endswith(b"data: [DONE]\r\n\r\n")


def test_an_error_body_in_a_stream_is_relayed_whole() -> None:
    observer = StreamUsage(client_asked=False)
    body = b'{"error": {"message": "bad", "type": "invalid_request_error"}}'
    assert relay(observer, body, 8) == body and observer.usage is None


def test_json_answer_usage_is_read_and_bytes_unchanged() -> None:
    observer = BodyUsage()
    body = json.dumps({"id": "x", "choices": [], "usage": USAGE}).encode()
    assert relay(observer, body, 5) == body
    assert observer.usage == Usage(11, 7)


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"error": {"message": "no"}}', b'{"usage": {"prompt_tokens": "3"}}', b"[]"],
)
def test_json_answer_without_usable_usage(body: bytes) -> None:
    observer = BodyUsage()
    relay(observer, body, 4)
    assert observer.usage is None


def test_ask_for_usage_splices_the_option_into_a_body_without_it() -> None:
    body = b' {"model": "m", "stream": true, "prompt": "hi"}'
    sent, asked = ask_for_usage(body)
    assert not asked
    assert json.loads(sent) == {
        "model": "m", "stream": True, "prompt": "hi", "stream_options": {"include_usage": True}
    }  # fmt: skip


@pytest.mark.parametrize(
    ("options", "asked", "expected"),
    [
        ({"include_usage": True}, True, {"include_usage": True}),
        ({"include_usage": False}, False, {"include_usage": True}),
        ({"continuous_usage_stats": False}, False,
         {"continuous_usage_stats": False, "include_usage": True}),
        (None, False, {"include_usage": True}),
        ("bogus", True, "bogus"),
    ],
)  # fmt: skip
def test_ask_for_usage_with_the_clients_stream_options(
    options: object, asked: bool, expected: object
) -> None:
    body = json.dumps({"model": "m", "stream": True, "stream_options": options}).encode()
    sent, client_asked = ask_for_usage(body)
    assert client_asked is asked
    assert json.loads(sent)["stream_options"] == expected


def test_estimate_is_a_quarter_of_the_body() -> None:
    assert estimate_tokens(b"x" * 400) == 100
    assert estimate_tokens(b"") == 1


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le", "utf-32"])
def test_ask_for_usage_rewrites_bodies_in_other_json_encodings(encoding: str) -> None:
    body = json.dumps({"model": "m", "stream": True}).encode(encoding)
    sent, asked = ask_for_usage(body)
    assert not asked and json.loads(sent)["stream_options"] == {"include_usage": True}
