"""Slow clients cannot hold connections (issue 18, item 5): a real llm-server with short
header and body deadlines closes a connection that sends nothing, half its headers, or part
of its body, while a prompt client on a kept-alive connection is served as usual."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from running_server import ServerProcess, run_server

DEADLINE_S = 0.5
WAIT_BOUND_S = 30  # far beyond the deadline: only a connection that is never closed fails


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, server_log_dir: Path) -> Iterator[ServerProcess]:
    args = (
        "--http-header-timeout-seconds", str(DEADLINE_S),
        "--http-body-timeout-seconds", str(DEADLINE_S),
    )  # fmt: skip
    with run_server(tiny_model_dir, server_log_dir, *args) as process:
        yield process


def _closed_by_server(server: ServerProcess, sent: bytes) -> bytes:
    """Send `sent`, stall, and return what the server wrote before it closed the socket."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_BOUND_S) as sock:
        sock.sendall(sent)
        received = b""
        try:
            while chunk := sock.recv(4096):
                received += chunk
        except ConnectionResetError:
            pass  # closed too, with a reset
        except TimeoutError:
            pytest.fail(f"the connection was still open after {WAIT_BOUND_S}s")
        return received


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param(b"", id="silent"),
        pytest.param(b"POST /v1/completions HTTP/1.1\r\nHost: test\r\nContent-Le", id="headers"),
        pytest.param(
            b"POST /v1/completions HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"prompt": "hel',
            id="body",
        ),
    ],
)
def test_stalled_request_is_closed(server: ServerProcess, sent: bytes) -> None:
    received = _closed_by_server(server, sent)
    assert b"200 OK" not in received


def test_prompt_client_keeps_its_connection(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        first = http.post("/v1/completions", json={"prompt": "hi", "max_tokens": 2})
        second = http.get("/health")
    assert (first.status_code, second.status_code) == (200, 200)
