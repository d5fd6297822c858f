"""`llm-server --tensor-parallel-size 2` on CPU (gloo): serves like the single-process server,
and dies loudly, never hanging, when one of its ranks is killed.

The kill test is last and kills the module's 2-rank server: one server start less (each
costs seconds on 2 cores) for the price of running in file order, which pytest does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from running_server import SERVED_NAME, ServerProcess, run_server

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="finds child ranks via /proc")

TP_ARGS = ("--tensor-parallel-size", "2")
GREEDY: dict[str, Any] = {"temperature": 0.0, "extra_body": {"ignore_eos": True}}
HANG_GUARD_S = 60  # generous bounds that only turn a hang into a failure; nothing is timed
PROMPTS = ["The quick brown fox", "Cluster latency and the queue", "hello world " * 12]


def _client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0)


def _child_pids(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                # Fields after the parenthesised command: state, then ppid.
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    children.append(int(entry.name))
    return children


@pytest.fixture(scope="module")
def tp_server(tiny_model_dir: Path, server_log_dir: Path) -> Iterator[ServerProcess]:
    with run_server(tiny_model_dir, server_log_dir, *TP_ARGS) as server:
        yield server


@pytest.fixture(scope="module")
def servers(
    tiny_model_dir: Path, server_log_dir: Path, tp_server: ServerProcess
) -> Iterator[tuple[openai.OpenAI, ...]]:
    """(single-process client, 2-rank client)."""
    with run_server(tiny_model_dir, server_log_dir) as single:
        clients = (_client(single), _client(tp_server))
        yield clients
        for client in clients:
            client.close()  # no idle keep-alive connection for the drain to wait on


def test_completions_equal_the_single_process_server(servers: tuple[openai.OpenAI, ...]) -> None:
    single, tp = servers
    for prompt in PROMPTS:
        args = {"model": SERVED_NAME, "prompt": prompt, "max_tokens": 24, "logprobs": 2, **GREEDY}
        expected, actual = single.completions.create(**args), tp.completions.create(**args)
        assert actual.choices[0].text == expected.choices[0].text
        assert actual.usage == expected.usage
        theirs, ours = expected.choices[0].logprobs, actual.choices[0].logprobs
        assert theirs is not None and ours is not None
        assert ours.tokens == theirs.tokens
        assert ours.token_logprobs == pytest.approx(theirs.token_logprobs, abs=1e-4)


def test_streamed_chat_equals_the_single_process_server(
    servers: tuple[openai.OpenAI, ...],
) -> None:
    messages: list[Any] = [{"role": "user", "content": "Tell me about the cache"}]

    def chat(client: openai.OpenAI) -> str:
        stream = client.chat.completions.create(
            model=SERVED_NAME, messages=messages, max_tokens=32, stream=True, n=2, seed=11
        )
        texts = ["", ""]
        for chunk in stream:
            for choice in chunk.choices:
                texts[choice.index] += choice.delta.content or ""
        return "|".join(texts)

    single, tp = servers
    assert chat(tp) == chat(single)


def test_killing_a_rank_fails_the_server_loudly(tp_server: ServerProcess) -> None:
    server = tp_server
    (worker_pid,) = _child_pids(server.process.pid)  # rank 1; rank 0 is the server itself
    with _client(server) as client:
        stream_outcome: list[BaseException | str] = []
        first_token = threading.Event()

        def stream_until_it_ends() -> None:
            try:
                stream = client.completions.create(
                    model=SERVED_NAME, prompt="a long answer", max_tokens=900, stream=True,
                    **GREEDY,
                )  # fmt: skip
                for _ in stream:
                    first_token.set()
                stream_outcome.append("finished")
            except Exception as exc:  # what the client sees when the engine fails mid-stream
                stream_outcome.append(exc)
            finally:
                first_token.set()

        streamer = threading.Thread(target=stream_until_it_ends)
        streamer.start()
        assert first_token.wait(HANG_GUARD_S)
        os.kill(worker_pid, signal.SIGKILL)

        statuses = []
        deadline = time.monotonic() + HANG_GUARD_S
        while server.process.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                response = httpx.get(f"{server.base_url}/ready", timeout=2)
                statuses.append((response.status_code, response.json()["status"]))
            time.sleep(0.05)
        exit_code = server.process.wait(timeout=HANG_GUARD_S)
        streamer.join(HANG_GUARD_S)

    assert exit_code == 1, server.log()
    failed_at = statuses.index((503, "engine_failed"))  # ValueError if never reported
    assert all(status == (503, "engine_failed") for status in statuses[failed_at:])
    assert not streamer.is_alive()
    assert len(stream_outcome) == 1 and isinstance(stream_outcome[0], openai.APIError)
    assert f"rank 1 (pid {worker_pid}) exited" in server.log()
