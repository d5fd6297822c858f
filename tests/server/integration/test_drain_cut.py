"""A drain past its grace period answers what it cuts (issue 18, item 4): a real llm-server
with a short grace, a long stream and a long non-streamed request in flight, then SIGTERM.
The stream ends with an OpenAI-style error event and [DONE], the other request gets a 503
JSON error, and the process still exits 0 (not a plain-text 500 or a truncated stream)."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import httpx
from running_server import SERVED_NAME, run_server

LONG_MAX_TOKENS = 900  # the tiny model's context is 1024: seconds of decoding on CPU


def _body(stream: bool) -> dict[str, Any]:
    return {
        "model": SERVED_NAME, "prompt": "Drain me", "max_tokens": LONG_MAX_TOKENS,
        "temperature": 0, "ignore_eos": True, "stream": stream,
    }  # fmt: skip


async def _wait_inflight(http: httpx.AsyncClient, count: int) -> None:
    while True:
        text = (await http.get("/metrics")).text
        values = [line.rsplit(" ", 1)[1] for line in text.splitlines()
                  if line.startswith("llm_server_inflight_requests{")]  # fmt: skip
        if values and float(values[0]) >= count:
            return
        await asyncio.sleep(0.02)


async def test_drain_past_grace_sends_errors_before_closing(
    tiny_model_dir: Path, server_log_dir: Path
) -> None:
    with run_server(tiny_model_dir, server_log_dir, "--drain-grace-seconds", "0.2") as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
            plain = asyncio.create_task(http.post("/v1/completions", json=_body(stream=False)))
            events: list[str] = []
            async with http.stream("POST", "/v1/completions", json=_body(stream=True)) as stream:
                assert stream.status_code == 200
                async for line in stream.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    events.append(line.removeprefix("data: "))
                    if len(events) == 1:  # both requests are running: stop the server
                        await asyncio.wait_for(_wait_inflight(http, 2), 30)
                        server.process.send_signal(signal.SIGTERM)
            cut = await plain
        assert await asyncio.to_thread(server.process.wait, 60) == 0, server.log()

    assert events[-1] == "[DONE]", events[-3:]
    error = json.loads(events[-2])["error"]
    assert (error["type"], error["code"]) == ("service_unavailable_error", "shutdown"), error
    assert "grace period" in error["message"]
    tokens = [json.loads(event) for event in events[:-2]]
    assert all("choices" in chunk for chunk in tokens)
    assert sum(len(chunk["choices"]) for chunk in tokens) < LONG_MAX_TOKENS  # it was cut

    assert cut.status_code == 503, cut.text
    assert cut.headers["content-type"] == "application/json"
    assert cut.json()["error"]["code"] == "shutdown"
