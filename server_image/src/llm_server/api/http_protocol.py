"""uvicorn's h11 protocol with read deadlines: a slow or silent client cannot hold a connection.

uvicorn (0.55) times out only the idle gap between keep-alive requests: a client that opens a
connection and sends nothing, half its headers, or part of its body keeps it forever (1,100
such connections stayed open in a test). Here each request's headers must arrive within
`header_timeout_s` of the connection opening (or of the request's first byte on a kept-alive
connection), and its body within `body_timeout_s` of the headers; otherwise the connection is
closed (the handler, if one started, sees a disconnect). Once a request is fully read, no
deadline applies: a long response streams as long as it needs.
"""

from __future__ import annotations

import asyncio
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger(__name__)


class TimedH11Protocol(H11Protocol):
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0

    _read_timer: asyncio.TimerHandle | None = None
    _reading: type[h11.IDLE] | type[h11.SEND_BODY] | None = None  # the phase the timer is for

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._track_reading()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._track_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        self._disarm()
        super().on_response_complete()  # the keep-alive timer covers the idle gap that follows
        if self.conn.their_state is h11.SEND_BODY:  # a pipelined request's body is pending
            self._track_reading()

    def _track_reading(self) -> None:
        """One deadline per phase: IDLE (headers not complete yet), SEND_BODY (body pending)."""
        state = self.conn.their_state
        if state is h11.IDLE or state is h11.SEND_BODY:
            if self._reading is not state:
                timeout = self.header_timeout_s if state is h11.IDLE else self.body_timeout_s
                self._arm(state, timeout)
        else:
            self._disarm()

    def _arm(self, phase: type[h11.IDLE] | type[h11.SEND_BODY], timeout_s: float) -> None:
        self._disarm()
        self._reading = phase
        self._read_timer = self.loop.call_later(timeout_s, self._on_read_timeout)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
        self._read_timer = None
        self._reading = None

    def _on_read_timeout(self) -> None:
        what = "headers" if self._reading is h11.IDLE else "body"
        self._read_timer = None
        self._reading = None
        if not self.transport.is_closing():
            logger.debug("closing a connection from %s: its request %s came too slowly",
                         self.client, what)  # fmt: skip
            self.transport.close()


def timed_h11_protocol(header_timeout_s: float, body_timeout_s: float) -> type[TimedH11Protocol]:
    """The protocol class uvicorn instantiates per connection, with these deadlines."""
    return type(
        "ConfiguredTimedH11Protocol",
        (TimedH11Protocol,),
        {"header_timeout_s": header_timeout_s, "body_timeout_s": body_timeout_s},
    )
