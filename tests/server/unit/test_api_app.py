"""The HTTP layer in-process against a scripted fake engine: every error path, back-pressure
and cleanup, deterministically. The real engine is exercised in tests/server/integration."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from llm_server.api.app import create_app
from llm_server.api.state import ServerState
from llm_server.config import TINY_RANDOM, ServerConfig
from llm_server.engine.errors import QueueFullError
from llm_server.engine.request import EngineStats, TokenEvent
from llm_server.sampling_params import SamplingParams

EOS = 3
OUTPUT = "the quick brown fox jumps over the lazy dog"


class CharTokenizer:
    """One token per character; ids below 32 are special and vanish when decoded."""

    chat_template = "fake"
    eos_token_id = EOS

    def __len__(self) -> int:
        return 0x250

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return ([1] if add_special_tokens else []) + [ord(c) for c in text]

    def decode(self, ids: list[int], skip_special_tokens: bool = False, **_: Any) -> str:
        return "".join(chr(i) for i in ids if i >= 32 or not skip_special_tokens)

    def apply_chat_template(self, conversation: list[dict[str, Any]], **kwargs: Any) -> str:
        turns = "".join(f"<{m['role']}>{m['content']}" for m in conversation)
        return turns + ("<assistant>" if kwargs.get("add_generation_prompt") else "")


class FakeEngine:
    """Emits OUTPUT (then EOS) one character per token; `gate` holds every request back so
    tests can fill the waiting queue deterministically."""

    def __init__(self, max_waiting: int = 8, max_model_len: int = 256) -> None:
        self.tokenizer = CharTokenizer()
        self.max_model_len = max_model_len
        self.max_waiting = max_waiting
        self.gate = asyncio.Event()
        self.gate.set()
        self.running: set[str] = set()
        self.aborted: list[str] = []
        self.submitted: list[tuple[str, list[int], SamplingParams]] = []
        self.failed = False

    def submit(
        self, request_id: str, prompt_token_ids: list[int], params: SamplingParams
    ) -> AsyncIterator[TokenEvent]:
        if len(self.running) >= self.max_waiting:
            raise QueueFullError("full")
        self.running.add(request_id)
        self.submitted.append((request_id, list(prompt_token_ids), params))
        return self._events(request_id, len(prompt_token_ids), params)

    async def _events(
        self, request_id: str, num_prompt: int, params: SamplingParams
    ) -> AsyncIterator[TokenEvent]:
        shift = params.seed or 0
        text = OUTPUT[shift % 5 :]
        try:
            await self.gate.wait()
            for step in range(params.max_tokens):
                if request_id not in self.running:
                    return  # aborted: the stream just ends
                token = ord(text[step]) if step < len(text) else EOS
                stop = (token == EOS and not params.ignore_eos) or token in params.stop_token_ids
                last = stop or step == params.max_tokens - 1
                finish = ("stop" if stop else "length") if last else None
                top = ((token, -0.5), (token + 1, -1.5))[: params.logprobs or 0]
                logprob = -0.5 if params.logprobs is not None else None
                yield TokenEvent(request_id, token, logprob, top, finish, num_prompt)
                await asyncio.sleep(0)
                if last:
                    return
        finally:
            self.running.discard(request_id)

    def abort(self, request_id: str) -> None:
        if request_id in self.running:
            self.running.discard(request_id)
            self.aborted.append(request_id)

    def stats(self) -> EngineStats:
        return EngineStats(0, len(self.running), 0.25, 0, 1, 1, 10, 20)


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def state(engine: FakeEngine) -> ServerState:
    config = ServerConfig(
        model=TINY_RANDOM,
        served_model_names=("fake", "fake-alias"),
        max_request_body_bytes=2000,
        max_prompt_tokens=100,
    )
    server_state = ServerState(config)
    server_state.set_engine(engine)  # type: ignore[arg-type]
    return server_state


@pytest.fixture
async def client(state: ServerState) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(state))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


def assert_error(response: httpx.Response, status: int, param: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param
    return dict(error)


async def test_completion_text_usage_and_alias(client: httpx.AsyncClient) -> None:
    body = {"model": "fake-alias", "prompt": "hi", "max_tokens": 9}
    response = await client.post("/v1/completions", json=body)
    assert response.status_code == 200
    data = response.json()
    assert data["model"] == "fake-alias"
    assert data["choices"][0]["text"] == OUTPUT[:9]
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["usage"] == {
        "prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12,
        "prompt_tokens_details": None,
    }  # fmt: skip


async def test_batched_prompts_with_n_and_echo(client: httpx.AsyncClient) -> None:
    body = {"prompt": ["ab", "cd"], "n": 2, "max_tokens": 3, "echo": True, "seed": 0}
    data = (await client.post("/v1/completions", json=body)).json()
    texts = [choice["text"] for choice in sorted(data["choices"], key=lambda c: c["index"])]
    assert texts == ["abthe", "abhe ", "cdthe", "cdhe "]  # prompt-major, then seed + choice
    assert data["usage"]["prompt_tokens"] == 3 + 3  # each prompt once (BOS + 2)
    assert data["usage"]["completion_tokens"] == 12


async def test_eos_ends_text_without_appearing(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/completions", json={"prompt": "x", "max_tokens": 100})
    choice = response.json()["choices"][0]
    assert choice == {"index": 0, "text": OUTPUT, "logprobs": None, "finish_reason": "stop"}
    assert response.json()["usage"]["completion_tokens"] == len(OUTPUT) + 1


async def test_stop_string_is_cut_and_engine_request_aborted(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    for stream in (False, True):
        body = {"prompt": "x", "max_tokens": 40, "stop": ["zzz", "brown"], "stream": stream}
        response = await client.post("/v1/completions", json=body)
        if stream:
            events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
            assert events[-1] == "[DONE]"
            chunks = [json.loads(event) for event in events[:-1]]
            text = "".join(chunk["choices"][0]["text"] for chunk in chunks)
            finish = chunks[-1]["choices"][0]["finish_reason"]
        else:
            text = response.json()["choices"][0]["text"]
            finish = response.json()["choices"][0]["finish_reason"]
        assert (text, finish) == ("the quick ", "stop")
    assert len(engine.aborted) == 2
    assert not engine.running


async def test_chat_stream_role_first_usage_last(client: httpx.AsyncClient) -> None:
    body = {
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}],
        "max_tokens": 5, "n": 2, "seed": 1, "stream": True,
        "stream_options": {"include_usage": True},
    }  # fmt: skip
    response = await client.post("/v1/chat/completions", json=body)
    events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 10
    texts = {0: "", 1: ""}
    for chunk in chunks[:-1]:
        assert chunk["usage"] is None
        for choice in chunk["choices"]:
            texts[choice["index"]] += choice["delta"].get("content", "")
    assert texts == {0: OUTPUT[1:6], 1: OUTPUT[2:7]}  # seed + choice index


async def test_chat_prompt_uses_template(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    body = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]}
    response = await client.post("/v1/chat/completions", json={**body, "max_tokens": 2})
    assert response.status_code == 200
    prompt = engine.submitted[-1][1]
    assert CharTokenizer().decode(prompt) == "<system>s<user>u<assistant>"


async def test_logprobs_shapes(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/completions", json={"prompt": "x", "max_tokens": 3, "logprobs": 2}
    )
    logprobs = response.json()["choices"][0]["logprobs"]
    assert logprobs["tokens"] == ["t", "h", "e"]
    assert logprobs["token_logprobs"] == [-0.5, -0.5, -0.5]
    assert logprobs["top_logprobs"][0] == {"t": -0.5, "u": -1.5}
    assert logprobs["text_offset"] == [0, 1, 2]
    body = {"messages": [{"role": "user", "content": "u"}], "max_tokens": 2,
            "logprobs": True, "top_logprobs": 1}  # fmt: skip
    content = (await client.post("/v1/chat/completions", json=body)).json()["choices"][0]
    first = content["logprobs"]["content"][0]
    assert first["token"] == "t" and first["bytes"] == [116]
    assert first["top_logprobs"] == [{"token": "t", "logprob": -0.5, "bytes": [116]}]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "x", "temperature": 3}, "temperature"),
        ({"prompt": "x", "top_p": 0}, "top_p"),
        ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "x", "n": 0}, "n"),
        ({"prompt": "x", "logprobs": 21}, "logprobs"),
        ({"prompt": "x", "presence_penalty": 2.5}, "presence_penalty"),
        ({"prompt": "x", "use_beam_search": True}, "use_beam_search"),  # unknown: refused
        ({"prompt": "x", "min_tokens": 20, "max_tokens": 5}, "min_tokens"),
        ({"prompt": "x", "prompt_logprobs": 1, "stream": True}, None),
        ({"prompt": [7, 99999]}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({}, "prompt"),
        ({"prompt": "x" * 150}, "prompt"),  # over --max-prompt-tokens
        ({"prompt": "x" * 50, "max_tokens": 250}, "max_tokens"),  # over the context
    ],
)
async def test_completion_parameter_errors(
    client: httpx.AsyncClient, body: dict[str, Any], param: str | None
) -> None:
    assert_error(await client.post("/v1/completions", json=body), 400, param)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}, None),
        (
            {"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]},
            "tools",
        ),
        ({"messages": [{"role": "user", "content": "x"}], "guided_json": {}}, "guided_json"),
        (
            {"messages": [{"role": "assistant", "content": "x"}], "continue_final_message": True},
            None,  # needs add_generation_prompt false
        ),
    ],
)
async def test_chat_parameter_errors(
    client: httpx.AsyncClient, body: dict[str, Any], param: str | None
) -> None:
    assert_error(await client.post("/v1/chat/completions", json=body), 400, param)


async def test_malformed_json_unknown_model_and_large_body(client: httpx.AsyncClient) -> None:
    headers = {"content-type": "application/json"}
    response = await client.post("/v1/completions", content=b'{"prompt": ', headers=headers)
    assert "JSON" in assert_error(response, 400)["message"]
    response = await client.post("/v1/completions", json={"model": "gpt-4", "prompt": "x"})
    assert assert_error(response, 404, "model")["code"] == "model_not_found"
    response = await client.post("/v1/completions", json={"prompt": "x" * 5000})
    assert assert_error(response, 413)["code"] == "request_too_large"


async def test_queue_full_is_429_and_all_or_nothing(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    engine.gate.clear()
    held = [
        asyncio.create_task(client.post("/v1/completions", json={"prompt": "x", "max_tokens": 2}))
        for _ in range(6)
    ]
    while len(engine.running) < 6:
        await asyncio.sleep(0)
    response = await client.post("/v1/completions", json={"prompt": "x", "n": 4})
    error = assert_error(response, 429)
    assert error["code"] == "queue_full" and response.headers["retry-after"] == "1"
    assert len(engine.running) == 6  # the two choices that fit were aborted again
    engine.gate.set()
    assert all(r.status_code == 200 for r in await asyncio.gather(*held))
    metrics = (await client.get("/metrics")).text
    assert (
        'llm_server_rejected_requests_total{model_name="fake",reason="queue_full"} 1.0' in metrics
    )


async def test_ready_and_refusal_while_draining(
    client: httpx.AsyncClient, state: ServerState
) -> None:
    assert (await client.get("/ready")).status_code == 200
    state.begin_drain()
    assert (await client.get("/health")).status_code == 200
    assert (await client.get("/ready")).json() == {"status": "draining"}
    response = await client.post("/v1/completions", json={"prompt": "x"})
    assert assert_error(response, 503)["code"] == "draining"
    assert "retry-after" in response.headers


async def test_dead_engine_fails_liveness_and_readiness(
    client: httpx.AsyncClient, state: ServerState
) -> None:
    assert state.engine is not None
    state.engine.failed = True  # type: ignore[misc]  # what AsyncEngine reports after a crash
    assert (await client.get("/health")).status_code == 503
    assert (await client.get("/ready")).json() == {"status": "engine_failed"}


async def test_loading_is_503() -> None:
    state = ServerState(ServerConfig(model=TINY_RANDOM))
    transport = httpx.ASGITransport(app=create_app(state))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        assert (await http.get("/ready")).status_code == 503
        assert (await http.get("/health")).status_code == 200
        response = await http.post("/v1/completions", json={"prompt": "x"})
        assert assert_error(response, 503)["code"] == "loading"


async def test_models_lists_every_served_name(client: httpx.AsyncClient) -> None:
    data = (await client.get("/v1/models")).json()
    assert [card["id"] for card in data["data"]] == ["fake", "fake-alias"]
    assert data["data"][0]["max_model_len"] == 256


async def test_inflight_lease_released_on_every_path(
    client: httpx.AsyncClient, state: ServerState
) -> None:
    await client.post("/v1/completions", json={"prompt": "x", "max_tokens": 3, "stream": True})
    await client.post("/v1/completions", json={"prompt": "x", "max_tokens": 300})
    await client.post("/v1/completions", json={"prompt": "x", "max_tokens": 3})
    assert state.inflight == 0
