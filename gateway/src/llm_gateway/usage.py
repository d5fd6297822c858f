"""The tokens an answer used, read from the bytes the gateway relays. Pure.

A JSON answer carries `usage`; it is parsed once the body has ended. A stream carries it only
when asked (`stream_options.include_usage`), so the gateway asks for it upstream and, when the
client had not, takes it back out: the extra last event (`choices: []` and the usage) is
dropped and the `"usage":null` every other event then carries is cut, so the client gets the
bytes it would have got. Only events that contain a usage object are parsed; the rest are
relayed as they came, apart from that cut.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

STREAM_OPTIONS = b'"stream_options"'
INCLUDE_USAGE = b'{"stream_options":{"include_usage":true},'
USAGE_OBJECT = (b'"usage":{', b'"usage": {')
# The `usage: null` of each event once include_usage is on, in compact and in spaced JSON.
NULL_USAGE = (b',"usage":null', b', "usage": null')
MAX_PENDING_BYTES = 1024 * 1024  # an event this long without its end is relayed unread
MAX_JSON_BYTES = 16 * 1024 * 1024  # a longer JSON answer is relayed without reading its usage
CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def estimate_tokens(body: bytes) -> int:
    """The prompt's tokens, guessed before the answer: characters / 4 of the request body."""
    return max(1, len(body) // CHARS_PER_TOKEN)


def usage_of(payload: Any) -> Usage | None:
    usage = payload.get("usage") if isinstance(payload, dict) else None
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens", 0)
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    return Usage(max(0, prompt), max(0, completion))


def ask_for_usage(body: bytes) -> tuple[bytes, bool]:
    """A streaming request's body with include_usage on, and whether the client asked for it.

    Without stream_options (the common case) the option is spliced in front of the first key;
    otherwise the body is parsed and written again.
    """
    stripped = body.lstrip()
    # UTF-8 (no BOM, no UTF-16/32 zero bytes): the bytes can be spliced.
    if STREAM_OPTIONS not in body and stripped[:1] == b"{" and b"\x00" not in stripped[:2]:
        return INCLUDE_USAGE + stripped[1:], False
    parsed = json.loads(body)
    options = parsed.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return body, True
    if options is not None and not isinstance(options, dict):
        return body, True  # not valid: the replica says so; its answer has no usage to drop
    parsed["stream_options"] = {**(options or {}), "include_usage": True}
    return json.dumps(parsed).encode(), False


class BodyUsage:
    """Reads `usage` from a JSON answer; relays every byte unchanged."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._size = 0
        self.usage: Usage | None = None

    def feed(self, chunk: bytes) -> bytes:
        self._size += len(chunk)
        if self._size <= MAX_JSON_BYTES:
            self._chunks.append(chunk)
        return chunk

    def finish(self) -> bytes:
        if self._size <= MAX_JSON_BYTES:
            try:
                self.usage = usage_of(json.loads(b"".join(self._chunks)))
            except (ValueError, UnicodeDecodeError):
                self.usage = None
        self._chunks = []
        return b""


def _last_event_end(data: bytes) -> int:
    """The index just past the last complete event in `data`, or 0."""
    if data.endswith(b"\n\n"):
        return len(data)  # the usual case: the chunk ends with its event
    lf, crlf = data.rfind(b"\n\n"), data.rfind(b"\r\n\r\n")
    return max(lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0)


class StreamUsage:
    """Reads `usage` from a server-sent event stream; takes it out when the client did not ask.

    Bytes are relayed by whole events (a partial one waits for its end, which llm-server sends
    in the same write), so an event is never cut or dropped halfway.
    """

    def __init__(self, client_asked: bool) -> None:
        self._client_asked = client_asked
        self._pending = b""
        self.usage: Usage | None = None

    def feed(self, chunk: bytes) -> bytes:
        data = self._pending + chunk if self._pending else chunk
        end = _last_event_end(data)
        if end == 0 and len(data) <= MAX_PENDING_BYTES:
            self._pending = data
            return b""
        if end == 0:
            end = len(data)
        self._pending = data[end:]
        return self._events(data[:end])

    def finish(self) -> bytes:
        data, self._pending = self._pending, b""
        return self._events(data) if data else b""

    def _events(self, data: bytes) -> bytes:
        compact, spaced = USAGE_OBJECT
        if compact in data or spaced in data:
            data = self._read_usage(data)
        if not self._client_asked:
            compact, spaced = NULL_USAGE
            data = data.replace(compact, b"")
            if spaced in data:
                data = data.replace(spaced, b"")
        return data

    def _read_usage(self, data: bytes) -> bytes:
        kept: list[bytes] = []
        for event in data.splitlines(keepends=True) if b"\r" in data else _split(data):
            if any(marker in event for marker in USAGE_OBJECT):
                payload = _event_json(event)
                usage = usage_of(payload)
                if usage is not None:
                    self.usage = usage
                    if not self._client_asked and payload.get("choices") == []:
                        continue  # the usage-only event the client did not ask for
            kept.append(event)
        return b"".join(kept)


def _split(data: bytes) -> list[bytes]:
    """Events with their blank-line ends ("data: {...}\\n\\n")."""
    events = [part + b"\n\n" for part in data.split(b"\n\n")]
    events[-1] = events[-1][:-2]  # what followed the last end (b"" for whole events)
    return [event for event in events if event]


def _event_json(event: bytes) -> Any:
    for line in event.splitlines():
        if line.startswith(b"data:"):
            try:
                return json.loads(line[5:])
            except (ValueError, UnicodeDecodeError):
                return None
    return None
