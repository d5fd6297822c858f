"""A real `llm-server` process survives sampling values that round to 0 in float32 while
another stream is in flight (issue 18, item 1: this used to exit 1 and kill every stream)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from running_server import SERVED_NAME, ServerProcess, run_server


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, server_log_dir: Path) -> Iterator[ServerProcess]:
    with run_server(tiny_model_dir, server_log_dir) as process:
        yield process


def _body(**fields: Any) -> dict[str, Any]:
    return {"model": SERVED_NAME, "prompt": "hello", "ignore_eos": True, **fields}


async def _stream(http: httpx.AsyncClient) -> list[str]:
    body = _body(max_tokens=200, temperature=0.0, stream=True)
    async with http.stream("POST", "/v1/completions", json=body) as response:
        assert response.status_code == 200
        return [line async for line in response.aiter_lines() if line.startswith("data: ")]


async def test_tiny_top_p_and_temperature_leave_the_server_serving(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=120) as http:
        other = asyncio.create_task(_stream(http))
        await asyncio.sleep(0.2)
        for fields in ({"top_p": 1e-300}, {"temperature": 1e-300}):
            response = await http.post("/v1/completions", json=_body(max_tokens=4, **fields))
            assert response.status_code == 200, response.text
        events = await other
        assert events[-1] == "data: [DONE]"
        assert json.loads(events[-2][6:])["choices"][0]["finish_reason"] == "length"
        assert (await http.get("/health")).status_code == 200
    assert server.process.poll() is None  # still running
