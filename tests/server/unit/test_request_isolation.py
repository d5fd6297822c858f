"""One request can never stop the engine: sampling values that round to 0 in float32 are
clamped, and a failure in one sequence's sampling fails that request alone (issue 18, item 1).
Driven through the real HTTP app on the tiny model's real AsyncEngine."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import torch

from llm_server.api.app import create_app
from llm_server.api.state import ServerState
from llm_server.config import TINY_RANDOM, ServerConfig
from llm_server.engine import model_runner
from llm_server.engine.async_engine import AsyncEngine
from llm_server.engine.engine import LLMEngine
from llm_server.layers.sampler import sample
from llm_server.sampling_params import SamplingParams

LONG = {"model": "tiny", "prompt": "hello there", "max_tokens": 60, "ignore_eos": True}
POISON_TOP_K = 7  # rows with this top_k get NaN logits in `poisoned_sample`


@pytest.fixture
async def served(make_engine: Callable[..., LLMEngine]) -> AsyncIterator[tuple[Any, AsyncEngine]]:
    engine = AsyncEngine(make_engine())
    await engine.start()
    state = ServerState(ServerConfig(model=TINY_RANDOM, served_model_names=("tiny",)))
    state.set_engine(engine)
    transport = httpx.ASGITransport(app=create_app(state), raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http, engine
    finally:
        await engine.shutdown()


async def _complete(http: httpx.AsyncClient, **fields: Any) -> httpx.Response:
    return await http.post("/v1/completions", json={**LONG, **fields}, timeout=120)


async def _stream_events(http: httpx.AsyncClient, **fields: Any) -> list[str]:
    body = {**LONG, **fields, "stream": True}
    async with http.stream("POST", "/v1/completions", json=body, timeout=120) as response:
        assert response.status_code == 200
        return [line async for line in response.aiter_lines() if line.startswith("data: ")]


async def _assert_still_serving(http: httpx.AsyncClient, engine: AsyncEngine) -> None:
    assert not engine.failed
    assert (await http.get("/health")).status_code == 200
    after = await _complete(http, max_tokens=3, temperature=0.0)
    assert after.status_code == 200, after.text


@pytest.mark.parametrize(
    "fields",
    [
        {"top_p": 1e-45},
        {"top_p": 1e-300},
        {"temperature": 1e-45},
        {"temperature": 1e-300},
        {"temperature": 1e-300, "top_p": 1e-300, "min_p": 1.0},
    ],
)
async def test_tiny_sampling_values_answer_and_spare_the_others(
    served: tuple[httpx.AsyncClient, AsyncEngine], fields: dict[str, float]
) -> None:
    http, engine = served
    other = asyncio.create_task(_stream_events(http, temperature=0.0))
    await asyncio.sleep(0.05)  # the other stream is in flight
    bad = await _complete(http, max_tokens=5, **fields)
    assert bad.status_code == 200, bad.text
    assert bad.json()["choices"][0]["finish_reason"] == "length"
    events = await other
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[-2][6:])["choices"][0]["finish_reason"] == "length"
    await _assert_still_serving(http, engine)


def poisoned_sample(
    logits: torch.Tensor,
    params: list[SamplingParams],
    generators: list[torch.Generator],
    histories: Any = None,
) -> Any:
    """The real sampler, with NaN logits for the marked rows (a sequence whose sampling breaks)."""
    for row, p in enumerate(params):
        if p.top_k == POISON_TOP_K:
            logits[row] = float("nan")
    return sample(logits, params, generators, histories)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_failing_sequence_fails_its_request_alone(
    served: tuple[httpx.AsyncClient, AsyncEngine],
    monkeypatch: pytest.MonkeyPatch,
    stream: bool,
) -> None:
    http, engine = served
    monkeypatch.setattr(model_runner, "sample", poisoned_sample)
    other = asyncio.create_task(_stream_events(http, temperature=0.0))
    await asyncio.sleep(0.05)
    if stream:
        events = await _stream_events(http, top_k=POISON_TOP_K)
        assert events[-1] == "data: [DONE]"
        error = json.loads(events[-2][6:])["error"]
    else:
        response = await _complete(http, top_k=POISON_TOP_K)
        assert response.status_code == 500
        error = response.json()["error"]
    assert error["type"] == "server_error"
    assert "error id err-" in error["message"]  # an id to find the logged detail by
    assert "distribution" not in error["message"]  # not the raw exception text
    events = await other
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[-2][6:])["choices"][0]["finish_reason"] == "length"
    await _assert_still_serving(http, engine)
