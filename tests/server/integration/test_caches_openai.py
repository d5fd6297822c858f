"""Prefix caching and the exact-response cache on a real llm-server process (loopback),
driven by httpx (raw bytes) and the official openai client."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families
from running_server import SERVED_NAME, ServerProcess, run_server

TTL_S = 3.0
MAX_ENTRIES = 8
MAX_BYTES = 12000
CACHE_HEADER = "x-llm-server-cache"
Job = tuple[str, bool, int]  # prompt, stream, max_tokens
GREEDY: dict[str, Any] = {"temperature": 0.0, "ignore_eos": True}


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, server_log_dir: Path) -> Iterator[ServerProcess]:
    with run_server(
        tiny_model_dir, server_log_dir, "--response-cache",
        "--response-cache-ttl-seconds", str(TTL_S),
        "--response-cache-max-entries", str(MAX_ENTRIES),
        "--response-cache-max-bytes", str(MAX_BYTES),
    ) as process:  # fmt: skip
        yield process


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0)


def scrape(http: httpx.Client) -> dict[tuple[str, str | None], float]:
    text = http.get("/metrics").text
    return {
        (sample.name, sample.labels.get("reason")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def post(http: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    response = http.post(path, json={"model": SERVED_NAME, **body})
    assert response.status_code == 200, response.text
    return response


def test_non_streamed_hit_is_byte_identical(http: httpx.Client, client: openai.OpenAI) -> None:
    body = {"prompt": "the cache block of a server", "max_tokens": 12, **GREEDY}
    first = post(http, "/v1/completions", body)
    second = post(http, "/v1/completions", body)
    assert first.headers[CACHE_HEADER] == "miss" and second.headers[CACHE_HEADER] == "hit"
    assert second.content == first.content  # id and created included
    parsed = client.completions.create(
        model=SERVED_NAME, prompt=body["prompt"], max_tokens=12, temperature=0.0,
        extra_body={"ignore_eos": True},
    )  # fmt: skip
    assert parsed.model_dump(exclude_unset=True) == first.json()


def test_streamed_hit_replays_the_same_events(http: httpx.Client, client: openai.OpenAI) -> None:
    body = {
        "messages": [{"role": "user", "content": "hello world stream"}],
        "max_tokens": 10, "stream": True, "stream_options": {"include_usage": True}, **GREEDY,
    }  # fmt: skip

    def stream() -> tuple[str, bytes]:
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            return response.headers[CACHE_HEADER], response.read()

    (first_state, first), (second_state, second) = stream(), stream()
    assert (first_state, second_state) == ("miss", "hit")
    assert second == first
    events = first.split(b"\n\n")
    assert events[-2:] == [b"data: [DONE]", b""] and len(events) > 5
    # The official client reads the replay like any live stream.
    chunks = list(
        client.chat.completions.create(
            model=SERVED_NAME, messages=body["messages"], max_tokens=10, temperature=0.0,
            stream=True, stream_options={"include_usage": True}, extra_body={"ignore_eos": True},
        )
    )  # fmt: skip
    assert len(chunks) == len(events) - 2
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 10
    # The non-streamed form of the same request is a different response: its own entry.
    whole = post(http, "/v1/chat/completions", {**body, "stream": False, "stream_options": None})
    assert whole.headers[CACHE_HEADER] == "miss"


def test_sampled_without_seed_never_hits(http: httpx.Client) -> None:
    before = scrape(http)
    body = {"prompt": "quick brown fox", "max_tokens": 6, "temperature": 1.0}
    for _ in range(3):
        assert CACHE_HEADER not in post(http, "/v1/completions", body).headers
    after = scrape(http)
    for name in ("llm_server_response_cache_hits_total", "llm_server_response_cache_misses_total"):
        assert after[(name, None)] == before[(name, None)]
    seeded = {**body, "seed": 11}
    first, second = post(http, "/v1/completions", seeded), post(http, "/v1/completions", seeded)
    assert second.headers[CACHE_HEADER] == "hit" and second.content == first.content


def test_prefix_cache_reports_cached_prompt_tokens(http: httpx.Client) -> None:
    system = " ".join(["the model answers every question about the cluster node"] * 12)
    before = scrape(http)[("vllm:prefix_cache_hits_total", None)]
    usages = []
    for question in ("what is a token?", "why is the queue long?"):
        body = {  # sampled without a seed: bypasses the response cache
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": question},
            ],
            "max_tokens": 3, "temperature": 1.0,
        }  # fmt: skip
        usages.append(post(http, "/v1/chat/completions", body).json()["usage"])
    assert usages[0]["prompt_tokens"] > 64
    cached = usages[1]["prompt_tokens_details"]["cached_tokens"]
    assert cached >= 64 and cached % 16 == 0 and cached < usages[1]["prompt_tokens"]
    after = scrape(http)[("vllm:prefix_cache_hits_total", None)]
    assert after - before >= cached


def test_concurrent_load_keeps_every_bound(http: httpx.Client) -> None:
    # Four hot requests (two prompts, streamed and not) between cold ones: hot ones hit; many
    # small cold answers then push entries out by count, a few long streams by bytes.
    hot = [(f"hot prompt {k}", stream, 6) for k in range(2) for stream in (False, True)]
    small = [(f"small request {i} about the budget", False, 4) for i in range(16)]
    large = [(f"large request {i} about the replica", True, 24) for i in range(6)]
    cold = small + large
    jobs = [job for i in range(22) for job in (hot[(2 * i) % 4], hot[(2 * i + 1) % 4], cold[i])]
    bound_violations: list[dict[str, float]] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            samples = scrape(http)
            entries = samples[("llm_server_response_cache_entries", None)]
            size = samples[("llm_server_response_cache_bytes", None)]
            if entries > MAX_ENTRIES or size > MAX_BYTES:
                bound_violations.append({"entries": entries, "bytes": size})
            time.sleep(0.02)

    def call(job: Job) -> tuple[Job, str, bytes]:
        prompt, stream, max_tokens = job
        body = {"model": SERVED_NAME, "prompt": prompt, "max_tokens": max_tokens,
                "stream": stream, **GREEDY}  # fmt: skip
        with httpx.Client(base_url=str(http.base_url), timeout=60) as own:
            response = own.post("/v1/completions", json=body)
        assert response.status_code == 200, response.text
        return job, response.headers[CACHE_HEADER], response.content

    before = scrape(http)
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(call, jobs))
    finally:
        done.set()
        watcher.join()
    after = scrape(http)
    assert not bound_violations
    assert after[("llm_server_response_cache_entries", None)] <= MAX_ENTRIES
    assert after[("llm_server_response_cache_bytes", None)] <= MAX_BYTES

    def delta(name: str, reason: str | None = None) -> float:
        return after[(name, reason)] - before.get((name, reason), 0.0)

    hits = delta("llm_server_response_cache_hits_total")
    assert hits + delta("llm_server_response_cache_misses_total") == len(jobs)
    assert hits == sum(1 for _, state, _ in results if state == "hit")
    assert hits > 0
    assert delta("llm_server_response_cache_evictions_total", "max_entries") > 0
    assert delta("llm_server_response_cache_evictions_total", "max_bytes") > 0
    # Every hit is byte-identical to a response the server produced for that same request.
    produced: dict[Job, set[bytes]] = {}
    for job, state, content in results:
        if state == "miss":
            produced.setdefault(job, set()).add(content)
    for job, state, content in results:
        if state == "hit":
            assert content in produced[job]


def test_entries_expire_after_the_ttl(http: httpx.Client) -> None:
    body = {"prompt": "lazy dog jumps", "max_tokens": 4, **GREEDY}
    first = post(http, "/v1/completions", body)
    assert post(http, "/v1/completions", body).headers[CACHE_HEADER] == "hit"
    expired_before = scrape(http)[("llm_server_response_cache_evictions_total", "expired")]
    time.sleep(TTL_S + 0.3)
    third = post(http, "/v1/completions", body)
    assert third.headers[CACHE_HEADER] == "miss"
    assert third.json()["id"] != first.json()["id"]
    assert scrape(http)[("llm_server_response_cache_evictions_total", "expired")] > expired_before
