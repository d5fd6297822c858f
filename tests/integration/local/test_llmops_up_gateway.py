"""`llmops up --replicas 2 --gateway` (issue 22 item 6): two real `llm-server` processes of the
tiny example behind a real `llm-gateway`; a request through the gateway with the official
`openai` client is answered by one of them, and Ctrl-C stops all three."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "cpu-tiny.yaml"  # served as "tiny-chat"
READY_TIMEOUT_S = 300


def consecutive_free_ports(count: int) -> int:
    """The first of `count` consecutive free loopback ports."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = int(probe.getsockname()[1])
        if first + count > 65535:
            continue
        socks = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no consecutive free ports")


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Up:
    def __init__(self, process: subprocess.Popen[bytes], log: Path, ports: list[int]) -> None:
        self.process, self.log, self.ports = process, log, ports

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    base = consecutive_free_ports(3)
    server_ports, gateway_port = [base, base + 1], base + 2
    log = tmp_path / "llmops-up.log"
    command = [
        sys.executable, "-m", "llm_operator.cli", "up", "-f", str(EXAMPLE),
        "--replicas", "2", "--gateway", "--port", str(base), "--gateway-port", str(gateway_port),
        "--ready-timeout", str(READY_TIMEOUT_S),
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield Up(process, log, [*server_ports, gateway_port])
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_for_endpoint(up: Up) -> str:
    deadline = time.monotonic() + READY_TIMEOUT_S + 30
    while time.monotonic() < deadline:
        match = re.search(r"ready: OpenAI endpoint (\S+/v1),", up.output())
        if match:
            return match.group(1)
        assert up.process.poll() is None, f"llmops up exited:\n{up.output()[-3000:]}"
        time.sleep(0.25)
    raise AssertionError(f"never ready:\n{up.output()[-3000:]}")


def test_two_replicas_behind_a_local_gateway_answer_and_stop_on_ctrl_c(up: Up) -> None:
    endpoint = wait_for_endpoint(up)
    *servers, gateway = up.ports
    assert endpoint == f"http://127.0.0.1:{gateway}/v1"
    client = openai.OpenAI(base_url=endpoint, api_key="none", max_retries=0, timeout=120)
    try:
        assert [m.id for m in client.models.list().data] == ["tiny-chat"]
        answer = client.chat.completions.create(
            model="tiny-chat",
            messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=8,
            temperature=0,
            extra_body={"ignore_eos": True},
        )
        assert answer.usage is not None and answer.usage.completion_tokens == 8
        assert answer.choices[0].message.content
        with pytest.raises(openai.NotFoundError):
            client.completions.create(model="no-such-model", prompt="hi", max_tokens=1)
    finally:
        client.close()
    # The gateway sent it to one of the two servers (its pod label is the replica's address).
    metrics = httpx.get(f"http://127.0.0.1:{gateway}/metrics", timeout=5).text
    sent = re.findall(r'llm_gateway_requests_total\{model="tiny-chat",[^}]*pod="([^"]+)"', metrics)
    assert sent and set(sent) <= {f"127.0.0.1:{port}" for port in servers}, metrics
    for port in servers:  # both replicas are up, each answers on its own
        assert httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5).status_code == 200

    up.process.send_signal(signal.SIGINT)  # Ctrl-C
    assert up.process.wait(timeout=90) == 0, up.output()[-3000:]
    assert not [port for port in up.ports if listening(port)], "a process outlived llmops up"


def test_more_than_one_replica_needs_the_gateway() -> None:
    command = [sys.executable, "-m", "llm_operator.cli", "up", "-f", str(EXAMPLE),
               "--replicas", "2"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "needs --gateway" in result.stderr
    clash = [*command, "--gateway", "--port", "8000", "--gateway-port", "8001"]
    result = subprocess.run(clash, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--gateway-port 8001" in result.stderr
