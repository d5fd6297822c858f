"""The official `openai` client against a real llm-server process with the tiny model."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families
from running_server import SERVED_NAME, ServerProcess, run_server
from transformers import AutoTokenizer

MAX_BODY_BYTES = 65536
GREEDY: dict[str, Any] = {"temperature": 0.0, "extra_body": {"ignore_eos": True}}


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, server_log_dir: Path) -> Iterator[ServerProcess]:
    with run_server(
        tiny_model_dir, server_log_dir, "--max-request-body-bytes", str(MAX_BODY_BYTES)
    ) as process:
        yield process


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path) -> Any:
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_models(client: openai.OpenAI) -> None:
    assert [model.id for model in client.models.list()] == [SERVED_NAME, "tiny-alias"]


def test_completion_usage_counts_tokens(client: openai.OpenAI, tokenizer: Any) -> None:
    prompt = "The quick brown fox"
    result = client.completions.create(model=SERVED_NAME, prompt=prompt, max_tokens=7, **GREEDY)
    assert result.object == "text_completion" and result.model == SERVED_NAME
    assert result.choices[0].finish_reason == "length"
    assert result.usage is not None
    assert result.usage.prompt_tokens == len(tokenizer.encode(prompt))
    assert result.usage.completion_tokens == 7
    assert result.usage.total_tokens == result.usage.prompt_tokens + 7


def test_chat_applies_the_template(client: openai.OpenAI, tokenizer: Any) -> None:
    messages: list[Any] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hello world"},
    ]
    result = client.chat.completions.create(
        model="tiny-alias", messages=messages, max_tokens=6, **GREEDY
    )
    assert result.object == "chat.completion" and result.model == "tiny-alias"
    assert result.choices[0].message.role == "assistant"
    assert isinstance(result.choices[0].message.content, str)
    templated = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert result.usage is not None
    assert result.usage.prompt_tokens == len(tokenizer.encode(templated, add_special_tokens=False))
    assert result.usage.completion_tokens == 6


def test_streaming_with_usage_equals_non_streaming(client: openai.OpenAI) -> None:
    args: dict[str, Any] = {"model": SERVED_NAME, "prompt": "cache block", "max_tokens": 20}
    whole = client.completions.create(**args, **GREEDY)
    stream = client.completions.create(
        **args, **GREEDY, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 20
    assert all(chunk.usage is None for chunk in chunks[:-1])
    assert "".join(chunk.choices[0].text for chunk in chunks[:-1]) == whole.choices[0].text
    assert chunks[-2].choices[0].finish_reason == "length"


def test_chat_streaming_with_usage(client: openai.OpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": "tell me about queues"}]
    whole = client.chat.completions.create(
        model=SERVED_NAME, messages=messages, max_tokens=12, **GREEDY
    )
    chunks = list(
        client.chat.completions.create(
            model=SERVED_NAME, messages=messages, max_tokens=12, **GREEDY,
            stream=True, stream_options={"include_usage": True},
        )
    )  # fmt: skip
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


@pytest.mark.parametrize("stream", [False, True])
def test_stop_sequence_cuts_before_the_match(client: openai.OpenAI, stream: bool) -> None:
    args: dict[str, Any] = {"model": SERVED_NAME, "prompt": "the attention layer", **GREEDY}
    full = client.completions.create(**args, max_tokens=30).choices[0].text
    stop = full[8:11]
    expected = full[: full.index(stop)]
    if stream:
        chunks = list(client.completions.create(**args, max_tokens=30, stop=[stop], stream=True))
        text = "".join(chunk.choices[0].text for chunk in chunks)
        finish = chunks[-1].choices[0].finish_reason
    else:
        result = client.completions.create(**args, max_tokens=30, stop=[stop, "never-seen"])
        text, finish = result.choices[0].text, result.choices[0].finish_reason
    assert (text, finish) == (expected, "stop")


def test_stop_token_ids(client: openai.OpenAI, tokenizer: Any) -> None:
    args: dict[str, Any] = {"model": SERVED_NAME, "prompt": "server node", "temperature": 0.0}
    full = client.completions.create(**args, max_tokens=10, extra_body={"ignore_eos": True})
    first_token = tokenizer.encode(full.choices[0].text)[0]
    result = client.completions.create(
        **args, max_tokens=10, extra_body={"ignore_eos": True, "stop_token_ids": [first_token]}
    )
    assert result.choices[0].finish_reason == "stop"
    assert result.choices[0].text == ""  # the stop token itself is not shown
    assert result.usage is not None and result.usage.completion_tokens == 1


def test_n_choices_with_seed_are_distinct_and_counted(client: openai.OpenAI) -> None:
    result = client.completions.create(
        model=SERVED_NAME, prompt="hello", n=3, max_tokens=8, temperature=1.0, seed=7,
        extra_body={"ignore_eos": True},
    )  # fmt: skip
    assert sorted(choice.index for choice in result.choices) == [0, 1, 2]
    assert len({choice.text for choice in result.choices}) == 3
    assert result.usage is not None and result.usage.completion_tokens == 24
    chat = client.chat.completions.create(
        model=SERVED_NAME, messages=[{"role": "user", "content": "hi"}], n=2, max_tokens=4,
        seed=7, stream=True, extra_body={"ignore_eos": True},
    )  # fmt: skip
    finished = [c.choices[0].index for c in chat if c.choices and c.choices[0].finish_reason]
    assert sorted(finished) == [0, 1]


def test_seed_reproducibility(client: openai.OpenAI) -> None:
    def sample(seed: int) -> str:
        result = client.completions.create(
            model=SERVED_NAME, prompt="quick", max_tokens=16, temperature=1.0, seed=seed,
            extra_body={"ignore_eos": True},
        )  # fmt: skip
        return result.choices[0].text

    assert sample(1234) == sample(1234)
    assert sample(1234) != sample(4321)


def test_logprobs(client: openai.OpenAI) -> None:
    result = client.completions.create(
        model=SERVED_NAME, prompt="batch", max_tokens=5, logprobs=3, **GREEDY
    )
    logprobs = result.choices[0].logprobs
    assert logprobs is not None and logprobs.token_logprobs and logprobs.top_logprobs
    assert len(logprobs.tokens or []) == len(logprobs.token_logprobs) == 5
    for chosen, top in zip(logprobs.token_logprobs, logprobs.top_logprobs, strict=True):
        assert chosen is not None and chosen <= 0.0
        assert 1 <= len(top) <= 3 and max(top.values()) == pytest.approx(chosen, abs=1e-4)
    chat = client.chat.completions.create(
        model=SERVED_NAME, messages=[{"role": "user", "content": "x"}], max_tokens=4,
        logprobs=True, top_logprobs=2, **GREEDY,
    )  # fmt: skip
    content = chat.choices[0].logprobs.content if chat.choices[0].logprobs else None
    assert content is not None and len(content) == 4
    assert all(len(token.top_logprobs) == 2 and token.logprob <= 0.0 for token in content)


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.completions.create(model="gpt-4", prompt="x", max_tokens=1)
    assert caught.value.status_code == 404
    assert caught.value.code == "model_not_found" and caught.value.param == "model"


def test_prompt_longer_than_context_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=SERVED_NAME, prompt="hello " * 1500, max_tokens=1)
    assert caught.value.code == "context_length_exceeded" and caught.value.param == "prompt"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=SERVED_NAME, messages=[{"role": "user", "content": "hi"}], max_tokens=5000
        )
    assert caught.value.code == "context_length_exceeded" and caught.value.param == "max_tokens"


@pytest.mark.parametrize(
    ("args", "param"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"n": 0}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"logprobs": 50}, "logprobs"),
        ({"frequency_penalty": 2.5}, "frequency_penalty"),  # implemented, within [-2, 2]
    ],
)
def test_out_of_range_parameters_are_400(
    client: openai.OpenAI, args: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=SERVED_NAME, prompt="x", **args)
    assert caught.value.status_code == 400 and caught.value.param == param
    assert isinstance(caught.value.body, dict) and caught.value.body.get("message")


def test_body_too_large_is_413(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.completions.create(model=SERVED_NAME, prompt="y" * MAX_BODY_BYTES, max_tokens=1)
    assert caught.value.status_code == 413 and caught.value.code == "request_too_large"


def test_malformed_json_is_400(server: ServerProcess) -> None:
    response = httpx.post(
        f"{server.base_url}/v1/chat/completions",
        content=b'{"model": "tiny", "messages": [',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def _scrape(server: ServerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{server.base_url}/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    key = (name, tuple(sorted({"model_name": SERVED_NAME, **labels}.items())))
    return samples[key]


def test_metrics_parse_and_move(server: ServerProcess, client: openai.OpenAI) -> None:
    before = _scrape(server)
    client.completions.create(model=SERVED_NAME, prompt="metrics", max_tokens=5, **GREEDY)
    after = _scrape(server)
    for name in (
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:time_to_first_token_seconds_count",
        "vllm:e2e_request_latency_seconds_count",
        "vllm:request_queue_time_seconds_count",
    ):
        assert _value(after, name) > _value(before, name), name
    assert (
        _value(after, "vllm:generation_tokens_total")
        - _value(before, "vllm:generation_tokens_total")
        == 5
    )
    assert (
        _value(after, "vllm:inter_token_latency_seconds_count")
        - _value(before, "vllm:inter_token_latency_seconds_count")
        == 4
    )
    assert _value(after, "vllm:request_success_total", finished_reason="length") >= 1
    for gauge in ("vllm:num_requests_waiting", "vllm:num_requests_running"):
        assert _value(after, gauge) == 0
    assert 0.0 <= _value(after, "vllm:kv_cache_usage_perc") <= 1.0
    assert _value(after, "vllm:num_preemptions_total") >= 0
    assert _value(after, "llm_server_ready") == 1
    info = [key for key in after if key[0] == "llm_server_info"]
    assert dict(info[0][1])["dtype"] == "fp32" and dict(info[0][1])["device"] == "cpu"


def _wait_until_idle(server: ServerProcess) -> dict[Any, float]:
    for _ in range(600):
        samples = _scrape(server)
        if _value(samples, "vllm:num_requests_running") == 0:
            return samples
        time.sleep(0.05)
    raise AssertionError("the engine request was never freed")


def _wait_until_running(server: ServerProcess) -> None:
    for _ in range(600):
        if _value(_scrape(server), "vllm:num_requests_running") >= 1:
            return
        time.sleep(0.02)
    raise AssertionError("the request never started")


def test_disconnect_frees_the_engine_request(server: ServerProcess) -> None:
    body = b'{"model": "tiny", "prompt": "long", "max_tokens": 900, "ignore_eos": true%s}'
    for stream in (b"", b', "stream": true'):
        payload = body % stream
        host, port = server.base_url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(
                b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(payload)}\r\n\r\n".encode()
                + payload
            )
            _wait_until_running(server)
        samples = _wait_until_idle(server)
        assert _value(samples, "vllm:kv_cache_usage_perc") == 0.0
        assert _value(samples, "vllm:request_success_total", finished_reason="abort") >= 1
