"""The load client: N closed-loop clients streaming /v1/completions, and what their records say.

Every server gets the same client (httpx, SSE parsed by hand) and the same request bodies: only
fields both ours and llama-server accept (ours refuses unknown fields by name). Output tokens are
the servers' own `usage.completion_tokens` (the last stream chunk, `include_usage`); the times of
the chunks that carry text give TTFT and inter-token gaps.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from peers.workload import Request


@dataclass
class RequestRecord:
    sent: float  # perf_counter when the request was sent
    chunk_times: list[float] = field(default_factory=list)  # each chunk that carried text
    prompt_tokens: int = 0
    completion_tokens: int = 0
    text: str = ""
    error: str = ""


@dataclass(frozen=True)
class LoadResult:
    """One scenario on one server: throughput and latencies (seconds)."""

    requests: int
    errors: int
    wall_s: float
    output_tokens: int
    output_tokens_per_s: float
    ttft_p50_s: float
    ttft_p99_s: float
    tpot_p50_s: float  # per request: (last chunk - first chunk) / (output tokens - 1)
    itl_p50_s: float  # gaps between consecutive text chunks, all requests together
    itl_p99_s: float
    prompt_tokens_mean: float


def request_body(model: str, request: Request) -> dict[str, Any]:
    return {
        "model": model,
        "prompt": request.prompt,
        "max_tokens": request.max_tokens,
        "temperature": 0.0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def stream_one(client: httpx.AsyncClient, model: str, request: Request) -> RequestRecord:
    """One request; sent again once if the connection dropped before any answer (a kept-alive
    connection the server had just closed: llama-server did so once in a 2-request run)."""
    record = await _stream_once(client, model, request)
    if record.error.startswith("RemoteProtocolError") and not record.chunk_times:
        record = await _stream_once(client, model, request)
    return record


async def _stream_once(client: httpx.AsyncClient, model: str, request: Request) -> RequestRecord:
    record = RequestRecord(sent=time.perf_counter())
    try:
        async with client.stream(
            "POST", "/v1/completions", json=request_body(model, request)
        ) as response:
            if response.status_code != 200:
                body = (await response.aread()).decode(errors="replace")
                record.error = f"HTTP {response.status_code}: {body[:300]}"
                return record
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                now = time.perf_counter()
                if "error" in chunk:
                    record.error = str(chunk["error"])[:300]
                for choice in chunk.get("choices") or []:
                    if choice.get("text"):
                        record.chunk_times.append(now)
                        record.text += choice["text"]
                usage = chunk.get("usage")
                if usage:
                    record.prompt_tokens = usage.get("prompt_tokens", 0)
                    record.completion_tokens = usage.get("completion_tokens", 0)
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        record.error = f"{type(exc).__name__}: {exc}"[:300]
    if not record.error and not record.completion_tokens:
        record.error = "no usage.completion_tokens in the stream"
    return record


async def run_clients(
    base_url: str, model: str, requests: list[Request], clients: int, timeout_s: float
) -> tuple[float, list[RequestRecord]]:
    """`clients` workers take the requests in order, one at a time each; returns the start time
    and one record per request. The whole run is bounded by timeout_s."""
    queue = iter(enumerate(requests))
    records: list[RequestRecord | None] = [None] * len(requests)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=base_url, timeout=httpx.Timeout(timeout_s), limits=limits
    ) as client:

        async def worker() -> None:
            for index, request in queue:  # a shared iterator: each request is taken once
                records[index] = await stream_one(client, model, request)

        start = time.perf_counter()
        with contextlib.suppress(TimeoutError):  # what did not finish counts as an error
            await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(clients))), timeout_s)
    unfinished = RequestRecord(start, error=f"not finished within {timeout_s:.0f} s")
    return start, [r if r is not None else unfinished for r in records]


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank q-th percentile (q in 0..100); 0.0 for no values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else 0.0


def summarize(start: float, records: list[RequestRecord]) -> LoadResult:
    """Throughput counts the servers' completion tokens over first send to last chunk."""
    done = [r for r in records if not r.error and r.chunk_times]
    end = max((r.chunk_times[-1] for r in done), default=start)
    wall = end - start
    tokens = sum(r.completion_tokens for r in done)
    tpots = [
        (r.chunk_times[-1] - r.chunk_times[0]) / (r.completion_tokens - 1)
        for r in done
        if r.completion_tokens > 1
    ]
    gaps = [b - a for r in done for a, b in itertools.pairwise(r.chunk_times)]
    return LoadResult(
        requests=len(records),
        errors=len(records) - len(done),
        wall_s=wall,
        output_tokens=tokens,
        output_tokens_per_s=tokens / wall if wall > 0 else 0.0,
        ttft_p50_s=percentile([r.chunk_times[0] - r.sent for r in done], 50),
        ttft_p99_s=percentile([r.chunk_times[0] - r.sent for r in done], 99),
        tpot_p50_s=statistics.median(tpots) if tpots else 0.0,
        itl_p50_s=percentile(gaps, 50),
        itl_p99_s=percentile(gaps, 99),
        prompt_tokens_mean=statistics.fmean(r.prompt_tokens for r in done) if done else 0.0,
    )
