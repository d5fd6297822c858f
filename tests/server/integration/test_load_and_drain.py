"""Bounded load on loopback against a real llm-server: hundreds of concurrent streams with a
small waiting queue, then a SIGTERM in the middle of a burst.

Shows: no lost or duplicated tokens (each stream equals the unloaded greedy answer, and its
token count equals its usage), 429 with Retry-After instead of failures when over capacity,
and a drain that finishes every accepted stream before the process exits 0.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from running_server import SERVED_NAME, ServerProcess, run_server

NUM_STREAMS = 300
PROMPTS = [f"Request {i} asks the cluster about queue latency" for i in range(12)]
MAX_TOKENS = 16
LONG_MAX_TOKENS = 900  # the tiny model's context is 1024
RUNNING_SLOTS = 16


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, server_log_dir: Path) -> Iterator[ServerProcess]:
    args = (
        "--max-num-seqs", str(RUNNING_SLOTS), "--max-waiting", "16",
        "--drain-grace-seconds", "120",
    )  # fmt: skip
    with run_server(tiny_model_dir, server_log_dir, *args) as process:
        yield process


@dataclass
class StreamOutcome:
    status: int
    text: str = ""
    tokens: int = 0
    finish_reason: str | None = None
    usage_tokens: int | None = None
    done: bool = False
    rejections: list[int] = field(default_factory=list)


def _body(prompt: str, max_tokens: int) -> dict[str, Any]:
    return {
        "model": SERVED_NAME, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
        "ignore_eos": True, "logprobs": 0, "stream": True,
        "stream_options": {"include_usage": True},
    }  # fmt: skip


async def _stream_once(
    http: httpx.AsyncClient, prompt: str, max_tokens: int, started: list[int] | None = None
) -> StreamOutcome:
    """Status 0: the connection was refused or closed before any response (not accepted)."""
    request = http.build_request("POST", "/v1/completions", json=_body(prompt, max_tokens))
    try:
        response = await http.send(request, stream=True)
    except httpx.TransportError:
        return StreamOutcome(0)
    try:
        return await _read_stream(response, started)
    finally:
        await response.aclose()


async def _read_stream(response: httpx.Response, started: list[int] | None) -> StreamOutcome:
    outcome = StreamOutcome(response.status_code)
    if response.status_code != 200:
        body = json.loads(await response.aread())
        assert set(body["error"]) == {"message", "type", "param", "code"}
        if response.status_code == 429:
            assert body["error"]["code"] == "queue_full"
            assert int(response.headers["retry-after"]) >= 1
        return outcome
    async for line in response.aiter_lines():
        if not line.startswith("data: "):
            continue
        assert not outcome.done, "data after [DONE]"
        if line == "data: [DONE]":
            outcome.done = True
            continue
        chunk = json.loads(line[6:])
        assert "error" not in chunk, chunk
        if chunk["usage"] is not None:
            outcome.usage_tokens = chunk["usage"]["completion_tokens"]
        for choice in chunk["choices"]:
            outcome.text += choice["text"]
            outcome.tokens += len(choice["logprobs"]["tokens"])
            outcome.finish_reason = choice["finish_reason"] or outcome.finish_reason
        if started is not None and outcome.tokens == 1:
            started.append(1)
    return outcome


async def _stream_until_accepted(http: httpx.AsyncClient, prompt: str) -> StreamOutcome:
    """A well-behaved client: on 429 it waits Retry-After and tries again."""
    rejections = []
    for _ in range(200):
        outcome = await _stream_once(http, prompt, MAX_TOKENS)
        if outcome.status != 429:
            outcome.rejections = rejections
            return outcome
        rejections.append(429)
        await asyncio.sleep(1)
    raise AssertionError("never admitted")


def _client(server: ServerProcess) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=NUM_STREAMS + 50, max_keepalive_connections=50)
    return httpx.AsyncClient(base_url=server.base_url, limits=limits, timeout=300)


async def _greedy_reference(http: httpx.AsyncClient, prompt: str, max_tokens: int) -> str:
    body = {**_body(prompt, max_tokens), "stream": False}
    del body["stream_options"]
    response = await http.post("/v1/completions", json=body)
    return str(response.json()["choices"][0]["text"])


def _assert_complete(outcome: StreamOutcome, expected_text: str, max_tokens: int) -> None:
    assert outcome.status == 200
    assert outcome.done and outcome.finish_reason == "length"
    assert outcome.tokens == outcome.usage_tokens == max_tokens
    assert outcome.text == expected_text


async def test_concurrent_streams_lose_no_tokens_and_overflow_gets_429(
    server: ServerProcess,
) -> None:
    async with _client(server) as http:
        expected = {p: await _greedy_reference(http, p, MAX_TOKENS) for p in PROMPTS}
        # Long streams fill every running slot first, so the burst overflows the waiting queue
        # however slowly a loaded machine lets the clients send.
        started: list[int] = []
        blockers = [
            asyncio.create_task(_stream_once(http, PROMPTS[0], LONG_MAX_TOKENS, started))
            for _ in range(RUNNING_SLOTS)
        ]
        while len(started) < RUNNING_SLOTS:
            await asyncio.sleep(0.02)
        outcomes = await asyncio.gather(
            *(_stream_until_accepted(http, PROMPTS[i % len(PROMPTS)]) for i in range(NUM_STREAMS))
        )
        blocked = await asyncio.gather(*blockers)
        metrics = (await http.get("/metrics")).text
    for blocker in blocked:
        assert blocker.done and blocker.tokens == blocker.usage_tokens == LONG_MAX_TOKENS
    for i, outcome in enumerate(outcomes):
        _assert_complete(outcome, expected[PROMPTS[i % len(PROMPTS)]], MAX_TOKENS)
    rejected = sum(len(outcome.rejections) for outcome in outcomes)
    assert rejected > 0, "the burst never exceeded the waiting queue"
    labels = f'model_name="{SERVED_NAME}",reason="queue_full"'
    assert f"llm_server_rejected_requests_total{{{labels}}} {float(rejected)}" in metrics


def _probe_while_draining(base_url: str) -> httpx.Response:
    """Readiness turns 503 first; from then on new requests are refused while accepted streams
    drain. On its own thread, so the busy event loop of the streaming clients cannot delay it."""
    with httpx.Client(base_url=base_url, timeout=60) as http:
        while http.get("/ready").status_code == 200:
            time.sleep(0.01)
        return http.post("/v1/completions", json={"model": SERVED_NAME, "prompt": "x"})


async def test_sigterm_mid_burst_finishes_every_accepted_stream(server: ServerProcess) -> None:
    """Runs last in this module: it stops the server."""
    max_tokens = 96
    async with _client(server) as http:
        expected = {p: await _greedy_reference(http, p, max_tokens) for p in PROMPTS}
        # One long stream keeps the drain busy for a while, so the probes below reliably
        # reach the server before it has drained and closed its listener.
        long_started: list[int] = []
        long_stream = asyncio.create_task(
            _stream_once(http, "keep the drain busy", LONG_MAX_TOKENS, long_started)
        )
        while not long_started:
            await asyncio.sleep(0.005)
        started: list[int] = []
        burst = [
            asyncio.create_task(_stream_once(http, PROMPTS[i % len(PROMPTS)], max_tokens, started))
            for i in range(120)
        ]
        # Signal once most of the engine's 32 slots (16 running, 16 waiting) hold streams.
        while len(started) < 24 and not all(task.done() for task in burst):
            await asyncio.sleep(0.005)
        server.process.send_signal(signal.SIGTERM)
        probe = await asyncio.to_thread(_probe_while_draining, server.base_url)
        outcomes = await asyncio.gather(*burst)
        long_outcome = await long_stream
    assert long_outcome.done and long_outcome.finish_reason == "length"
    assert long_outcome.tokens == long_outcome.usage_tokens == LONG_MAX_TOKENS
    assert probe.status_code == 503 and probe.json()["error"]["code"] == "draining"
    accepted = [(i, outcome) for i, outcome in enumerate(outcomes) if outcome.status == 200]
    assert accepted
    # Not accepted: 429 (queue full), 503 (draining) or, once the drain is over and the
    # listener closed, no connection at all.
    assert {outcome.status for outcome in outcomes} <= {0, 200, 429, 503}
    for i, outcome in accepted:
        _assert_complete(outcome, expected[PROMPTS[i % len(PROMPTS)]], max_tokens)
    assert await asyncio.to_thread(server.process.wait, 120) == 0
    assert "drained: every accepted request finished" in server.log()
