"""The gateway in front of two REAL llm-server processes (tiny random model, CPU), driven by
the official `openai` client: routing, affinity onto a warm prefix cache, streaming intact."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from gateway_testing import target

from llm_gateway.directory import Replica, StaticDirectory
from llm_gateway.load import parse_queue

pytestmark = pytest.mark.slow

SERVER_SRC = Path(__file__).resolve().parents[3] / "server_image" / "src"
STARTUP_TIMEOUT_S = 180
GREEDY = {"temperature": 0.0, "max_tokens": 8, "extra_body": {"ignore_eos": True}}
SYSTEM = "You are the support assistant of a company that sells very small language models. " * 4


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llm-server exited early:\n{log.read_text(errors='replace')}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"llm-server never became ready:\n{log.read_text(errors='replace')}")


@pytest.fixture(scope="module")
def two_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Replica]]:
    from llm_server.tiny_model import build_tiny_model

    model = build_tiny_model(tmp_path_factory.mktemp("tiny"), family="llama", seed=0)
    logs = tmp_path_factory.mktemp("llm-server-logs")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SERVER_SRC), env.get("PYTHONPATH")]))
    started: list[tuple[subprocess.Popen[bytes], str, Path]] = []
    try:
        for index in range(2):
            port = _free_port()
            log = logs / f"server-{index}.log"
            command = [
                sys.executable, "-m", "llm_server", "--model", str(model),
                "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(port),
                "--device", "cpu", "--dtype", "fp32",
            ]  # fmt: skip
            with log.open("wb") as out:
                process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
            started.append((process, f"http://127.0.0.1:{port}", log))
        for process, url, log in started:  # both load at once
            _wait_ready(url, process, log)
        yield [Replica(f"pod-{i}", url, True, False) for i, (_, url, _) in enumerate(started)]
    finally:
        for process, _, _ in started:
            process.terminate()
        for process, _, _ in started:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _prefix_cache_hits(url: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    hits = [line for line in text.splitlines() if line.startswith("vllm:prefix_cache_hits")]
    return sum(float(line.rsplit(" ", 1)[1]) for line in hits)


async def test_openai_client_through_the_gateway(two_servers, make_gateway) -> None:
    gateway = await make_gateway(StaticDirectory([target("tiny", *two_servers)]))
    client = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key="sk-x", max_retries=0)
    direct = openai.AsyncOpenAI(base_url=two_servers[0].url + "/v1", api_key="x", max_retries=0)
    try:
        assert [m.id async for m in client.models.list()] == ["tiny"]
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "hi"}]
        # Streamed through the gateway == streamed straight from a server (same weights, greedy).
        via = await client.chat.completions.create(
            model="tiny", messages=messages, stream=True, **GREEDY
        )
        via_text = "".join([e.choices[0].delta.content or "" async for e in via if e.choices])
        straight = await direct.chat.completions.create(
            model="tiny", messages=messages, stream=True, **GREEDY
        )
        straight_text = "".join(
            [e.choices[0].delta.content or "" async for e in straight if e.choices]
        )
        assert via_text == straight_text and via_text
        completion = await client.completions.create(model="tiny", prompt="Hello", **GREEDY)
        assert completion.usage is not None and completion.usage.completion_tokens == 8
        with pytest.raises(openai.NotFoundError) as missing:
            await client.completions.create(model="nope", prompt="x", max_tokens=1)
        assert missing.value.code == "model_not_found"
        # A bad sampling parameter is the server's 400, relayed unchanged.
        with pytest.raises(openai.BadRequestError):
            await client.completions.create(model="tiny", prompt="x", max_tokens=-1)
    finally:
        await client.close()
        await direct.close()


async def test_a_shared_system_prompt_reuses_one_servers_prefix_cache(
    two_servers, make_gateway
) -> None:
    gateway = await make_gateway(StaticDirectory([target("tiny", *two_servers)]))
    client = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key="sk-x", max_retries=0)
    hits_before = {r.pod: _prefix_cache_hits(r.url) for r in two_servers}
    try:
        for user in range(6):  # one after another: affinity, not overflow
            messages = [
                {"role": "system", "content": SYSTEM}, {"role": "user", "content": f"q{user}"},
            ]  # fmt: skip
            await client.chat.completions.create(model="tiny", messages=messages, **GREEDY)
    finally:
        await client.close()
    metrics = await gateway.metrics()
    sent = {
        r.pod: f'llm_gateway_requests_total{{model="tiny",picked_by="affinity",pod="{r.pod}"}} 6.0'
        in metrics
        for r in two_servers
    }
    assert sorted(sent.values()) == [False, True], metrics  # all six to one server
    home = next(pod for pod, got_all in sent.items() if got_all)
    gained = {r.pod: _prefix_cache_hits(r.url) - hits_before[r.pod] for r in two_servers}
    assert gained[home] > 0 and all(v == 0 for pod, v in gained.items() if pod != home)
    # Both servers are idle again: what the load scraper reads is zero.
    for replica in two_servers:
        assert parse_queue(httpx.get(f"{replica.url}/metrics").text) == 0
