"""The exact-response cache: TTL, entry and byte bounds, LRU order, thread safety, keys,
and its metrics."""

from __future__ import annotations

import random
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from llm_server.api.protocol import CompletionRequest
from llm_server.api.response_caching import CacheSlot, StreamRecorder, cache_slot
from llm_server.api.streaming import sse_stream
from llm_server.cache.key import is_deterministic, model_revision, response_cache_key
from llm_server.cache.response_cache import (
    ENTRY_OVERHEAD_BYTES,
    CachedResponse,
    ResponseCache,
)
from llm_server.cli import parse_config
from llm_server.metrics import ServerMetrics


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def body(size: int, tag: str = "x") -> CachedResponse:
    return CachedResponse((tag.encode() * size,), streamed=False)


def key(i: int) -> bytes:
    return response_cache_key({"i": i})


def test_hit_miss_and_ttl_from_insertion() -> None:
    clock = FakeClock()
    cache = ResponseCache(max_entries=10, max_bytes=10_000, ttl_seconds=5, clock=clock)
    assert cache.get(key(1)) is None
    assert cache.put(key(1), body(10))
    clock.now += 4
    assert cache.get(key(1)) == body(10)  # a hit does not extend the entry's life
    clock.now += 1
    assert cache.get(key(1)) is None
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.entries, stats.bytes) == (1, 2, 0, 0)
    assert stats.evictions["expired"] == 1
    # Expired entries are purged on put and on stats, not only when looked up.
    cache.put(key(2), body(10))
    clock.now += 10
    assert cache.stats().entries == 0 and cache.stats().evictions["expired"] == 2


def test_entry_bound_evicts_least_recently_used() -> None:
    cache = ResponseCache(max_entries=3, max_bytes=10_000, ttl_seconds=60)
    for i in range(3):
        cache.put(key(i), body(5))
    assert cache.get(key(0)) is not None  # now the most recently used
    cache.put(key(3), body(5))
    assert cache.get(key(1)) is None and cache.get(key(0)) is not None
    stats = cache.stats()
    assert stats.entries == 3 and stats.evictions["max_entries"] == 1


def test_byte_bound_counts_key_payload_and_overhead() -> None:
    size = len(key(0)) + 100 + ENTRY_OVERHEAD_BYTES
    cache = ResponseCache(max_entries=100, max_bytes=size * 2, ttl_seconds=60)
    assert cache.put(key(0), body(100)) and cache.put(key(1), body(100))
    assert cache.stats().bytes == size * 2
    assert cache.put(key(2), body(100))
    stats = cache.stats()
    assert stats.entries == 2 and stats.bytes == size * 2 and stats.evictions["max_bytes"] == 1
    assert not cache.put(key(3), body(size * 2))  # alone larger than the cache
    assert not cache.put(key(2), body(1, "y"))  # already cached: the first answer stays
    assert cache.get(key(2)) == body(100)


def test_bounds_hold_under_concurrent_threads() -> None:
    max_entries, max_bytes = 16, 16 * 450  # both bounds bind: entries are 338..698 bytes
    cache = ResponseCache(max_entries=max_entries, max_bytes=max_bytes, ttl_seconds=60)
    violations: list[tuple[int, int]] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for i in range(400):
            k = key(rng.randrange(6) if rng.random() < 0.5 else rng.randrange(40))  # hot + cold
            if cache.get(k) is None:
                cache.put(k, body(50 + (i % 7) * 60))
            stats = cache.stats()
            if stats.entries > max_entries or stats.bytes > max_bytes:
                violations.append((stats.entries, stats.bytes))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = cache.stats()
    assert not violations
    assert stats.hits + stats.misses == 8 * 400
    assert stats.hits > 0 and stats.evictions["max_entries"] and stats.evictions["max_bytes"]
    # Byte accounting stays exact however the threads interleaved.
    cache.clear()
    assert cache.stats().bytes == 0 and cache.stats().entries == 0


def test_only_deterministic_requests_get_a_slot() -> None:
    cache = ResponseCache(max_entries=4, max_bytes=100_000, ttl_seconds=60)
    identity = {"revision": "r"}
    resolved = {"endpoint": "completions", "model": "m", "prompts": [[1, 2]], "max_tokens": [4]}

    def slot_key(**fields: object) -> bytes | None:
        request = CompletionRequest.model_validate({"prompt": "hi", **fields})
        slot = cache_slot(cache, request, identity, resolved, api_key_id=None)
        return None if slot is None else slot.key

    assert is_deterministic(0.0, None) and is_deterministic(0.7, 1)
    assert not is_deterministic(0.7, None)
    assert slot_key(temperature=1.0) is None  # sampled, no seed: never cached
    assert (
        cache_slot(
            None, CompletionRequest(prompt="x", temperature=0), identity, resolved, api_key_id=None
        )
        is None
    )
    greedy = slot_key(temperature=0)
    assert greedy is not None
    # Irrelevant fields do not change the key; every sampling parameter does.
    assert slot_key(temperature=0, prompt="other text, same tokens") == greedy
    variants = [
        {"top_p": 0.5}, {"top_k": 5}, {"n": 2}, {"seed": 3}, {"stop": ["."]},
        {"stop_token_ids": [9]}, {"ignore_eos": True}, {"logprobs": 2}, {"echo": True},
        {"stream": True}, {"stream": True, "stream_options": {"include_usage": True}},
    ]  # fmt: skip
    keys = {slot_key(temperature=0, **variant) for variant in variants}
    assert len(keys) == len(variants) and greedy not in keys
    seeded = {slot_key(temperature=0.8, seed=s) for s in (1, 2)}
    assert len(seeded) == 2 and None not in seeded
    other_prompt = cache_slot(
        cache, CompletionRequest(prompt="hi", temperature=0), identity,
        {**resolved, "prompts": [[1, 3]]}, api_key_id=None,
    )  # fmt: skip
    other_model = cache_slot(
        cache, CompletionRequest(prompt="hi", temperature=0), {"revision": "r2"}, resolved,
        api_key_id=None,
    )  # fmt: skip
    assert other_prompt is not None and other_model is not None
    assert len({greedy, other_prompt.key, other_model.key}) == 3


def test_each_tenant_has_its_own_entries() -> None:
    """The `user` field and the API key's identity are part of the key (issue 18 item 8)."""
    cache = ResponseCache(max_entries=4, max_bytes=100_000, ttl_seconds=60)
    resolved = {"endpoint": "completions", "model": "m", "prompts": [[1, 2]], "max_tokens": [4]}

    def slot_key(api_key_id: str | None, **fields: Any) -> bytes:
        request = CompletionRequest.model_validate({"prompt": "hi", "temperature": 0, **fields})
        slot = cache_slot(cache, request, {"revision": "r"}, resolved, api_key_id=api_key_id)
        assert slot is not None
        return slot.key

    tenants = [
        slot_key(None), slot_key(None, user="a"), slot_key(None, user="b"),
        slot_key("key-1"), slot_key("key-1", user="a"), slot_key("key-2", user="a"),
    ]  # fmt: skip
    assert len(set(tenants)) == len(tenants)
    assert slot_key("key-1", user="a") == slot_key("key-1", user="a")


def test_model_revision_changes_with_the_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"hidden_size": 8}')
    (tmp_path / "model.safetensors").write_bytes(b"0" * 10)
    first = model_revision(tmp_path)
    assert model_revision(tmp_path) == first
    (tmp_path / "config.json").write_text('{"hidden_size": 16}')
    assert model_revision(tmp_path) != first
    second = model_revision(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"0" * 11)
    assert model_revision(tmp_path) != second


def test_metrics_read_the_cache_at_scrape_time() -> None:
    cache = ResponseCache(max_entries=1, max_bytes=10_000, ttl_seconds=60)
    metrics = ServerMetrics("m", {}, lambda: None, response_cache_stats=cache.stats)
    cache.get(key(0))
    cache.put(key(0), body(10))
    cache.get(key(0))
    cache.put(key(1), body(10))
    text = metrics.render()[0].decode()
    samples = {
        (s.name, s.labels.get("reason")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("llm_server_response_cache")
    }
    assert samples[("llm_server_response_cache_hits_total", None)] == 1
    assert samples[("llm_server_response_cache_misses_total", None)] == 1
    assert samples[("llm_server_response_cache_evictions_total", "max_entries")] == 1
    assert samples[("llm_server_response_cache_entries", None)] == 1
    assert samples[("llm_server_response_cache_bytes", None)] == cache.stats().bytes > 0


@pytest.mark.parametrize("bad", [{"max_entries": 0}, {"max_bytes": 0}, {"ttl_seconds": 0}])
def test_bounds_must_be_positive(bad: dict[str, float]) -> None:
    settings = {"max_entries": 1, "max_bytes": 1, "ttl_seconds": 1.0, **bad}
    with pytest.raises(ValueError):
        ResponseCache(
            int(settings["max_entries"]), int(settings["max_bytes"]), settings["ttl_seconds"]
        )


def chunk(index: int, text: str, finish: str | None = None) -> dict[str, object]:
    return {"id": "c", "choices": [{"index": index, "text": text, "finish_reason": finish}]}


async def record(
    cache: ResponseCache, chunks: list[dict[str, object]], fail: bool = False
) -> tuple[list[bytes], CachedResponse | None]:
    slot = CacheSlot(cache, key(len(chunks) * 10 + fail))

    async def source() -> AsyncIterator[dict[str, object]]:
        for item in chunks:
            yield item
        if fail:
            raise RuntimeError("engine failed")

    recorder = StreamRecorder(slot, num_choices=2)
    sent = [frame async for frame in recorder.events(sse_stream(recorder.chunks(source())))]
    return sent, cache.get(slot.key)


async def test_only_complete_streams_are_recorded() -> None:
    cache = ResponseCache(max_entries=8, max_bytes=100_000, ttl_seconds=60)
    complete = [chunk(0, "a"), chunk(1, "b", "length"), chunk(0, "c", "stop")]
    sent, stored = await record(cache, complete)
    assert stored is not None and stored.streamed and b"".join(stored.parts) == b"".join(sent)
    assert stored.parts == tuple(sent) and sent[-1] == b"data: [DONE]\n\n"
    _, aborted = await record(cache, [chunk(0, "a", "stop"), chunk(1, "b", "abort")])
    _, unfinished = await record(cache, [chunk(0, "a", "stop"), chunk(1, "b")])
    sent, failed = await record(cache, [chunk(0, "a", "stop"), chunk(1, "b", "stop")], fail=True)
    assert b"engine_error" in sent[-2]  # the client saw the error event; nothing was stored
    assert aborted is None and unfinished is None and failed is None
    tiny = ResponseCache(max_entries=8, max_bytes=300, ttl_seconds=60)
    _, too_long = await record(tiny, [chunk(0, "x" * 200, "stop"), chunk(1, "y", "stop")])
    assert too_long is None and tiny.stats().bytes == 0


def test_the_flags_the_operator_renders() -> None:
    config = parse_config([
        "--model", "tiny-random", "--no-enable-prefix-caching", "--response-cache",
        "--response-cache-ttl-seconds", "60", "--response-cache-max-entries", "10000",
    ])  # fmt: skip
    assert config.response_cache and config.response_cache_ttl_seconds == 60
    assert config.response_cache_max_entries == 10000
    assert not config.engine_config("dir", cuda_available=False).enable_prefix_caching
    default = parse_config(["--model", "tiny-random", "--enable-prefix-caching"])
    assert default.engine_config("dir", cuda_available=False).enable_prefix_caching
    assert not default.response_cache
    with pytest.raises(SystemExit):
        parse_config(["--model", "tiny-random", "--response-cache-max-bytes", "0"])
