"""Delivery of each step's tokens to the event loop, before/after (issue 20), for
benchmarks/sampler_micro.py.

AsyncEngine runs over an engine whose step returns one token per running request at once (no
model), so what is timed is the delivery alone: "before" pushes each token through its own
loop.call_soon_threadsafe (5ebd54d's _deliver, copied below), "after" is today's AsyncEngine,
one call per step. Tokens/s through the asyncio consumers, and event-loop wake-ups per step.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from typing import Any

from llm_server.engine.async_engine import AsyncEngine
from llm_server.engine.errors import RequestFailedError
from llm_server.engine.request import EngineStats, TokenEvent
from llm_server.sampling_params import SamplingParams


class InstantEngine:
    """What AsyncEngine needs of an engine; each step yields one token per running request."""

    def __init__(self, tokens_per_request: int) -> None:
        self.tokenizer = None
        self.max_model_len, self.quantization = 4096, "none"
        self.config = type("Config", (), {"max_waiting": 1 << 20})()
        self.tokens = tokens_per_request
        self.running: dict[str, int] = {}
        self.num_waiting = 0

    def stats(self) -> EngineStats:
        return EngineStats(0, len(self.running), 0.0, 0, len(self.running), 0, 0, 0)

    def add_request(self, request_id: str, prompt: list[int], params: SamplingParams) -> None:
        self.running[request_id] = 0

    def step(self) -> list[TokenEvent]:
        events = []
        for rid in list(self.running):
            self.running[rid] += 1
            done = self.running[rid] >= self.tokens
            if done:
                del self.running[rid]
            events.append(TokenEvent(rid, 7, None, (), "length" if done else None, 3))
        return events

    def has_unfinished(self) -> bool:
        return bool(self.running)

    def generate(self, *_: Any) -> None: ...
    def watch_failures(self, _: Any) -> None: ...
    def reset_counters(self) -> None: ...
    def abort_request(self, request_id: str) -> bool:
        return self.running.pop(request_id, None) is not None

    def close(self) -> None: ...


class PerTokenDelivery(AsyncEngine):
    def _deliver(self, events: list[TokenEvent]) -> None:  # 5ebd54d's, verbatim
        with self._lock:
            for event in events:
                stream = self._streams.get(event.request_id)
                if stream is None:
                    continue
                if event.finish_reason is not None:
                    del self._streams[event.request_id]
                stream.push(RequestFailedError(event.error) if event.error else event)


async def deliver_once(kind: type[AsyncEngine], batch: int, tokens: int) -> tuple[float, float]:
    """Seconds to stream batch x tokens through asyncio consumers; wake-ups per step."""
    engine = kind(InstantEngine(tokens))  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    wake_ups = 0
    original = loop.call_soon_threadsafe

    def counted(*args: Any, **kwargs: Any) -> asyncio.Handle:
        nonlocal wake_ups
        wake_ups += threading.current_thread().name == "llm-engine"  # not start()'s threads
        return original(*args, **kwargs)

    params = SamplingParams(max_tokens=tokens)
    streams = [engine.submit(f"r{i}", [1, 2, 3], params) for i in range(batch)]

    async def drain(stream: Any) -> int:
        return sum([1 async for _ in stream])

    loop.call_soon_threadsafe = counted  # type: ignore[method-assign,assignment]
    start = time.perf_counter()
    await engine.start()
    try:
        got = await asyncio.gather(*(drain(s) for s in streams))
    finally:
        del loop.call_soon_threadsafe
        await engine.shutdown()
    assert got == [tokens] * batch
    return time.perf_counter() - start, wake_ups / tokens


def bench_delivery(batches: tuple[int, ...], repeats: int, tokens: int) -> list[dict[str, Any]]:
    rows = []
    for batch in batches:
        runs: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
        for r in range(repeats):
            kinds = [("before", PerTokenDelivery), ("after", AsyncEngine)]
            for name, kind in kinds if r % 2 == 0 else reversed(kinds):
                runs[name].append(asyncio.run(deliver_once(kind, batch, tokens)))
        row: dict[str, Any] = {"batch": batch, "tokens_per_request": tokens}
        for name, samples in runs.items():
            row[f"{name}_tok_s"] = statistics.median(batch * tokens / s for s, _ in samples)
            row[f"{name}_wake_ups_per_step"] = statistics.median(w for _, w in samples)
        row["speedup"] = row["after_tok_s"] / row["before_tok_s"]
        rows.append(row)
        print(row, flush=True)
    return rows
