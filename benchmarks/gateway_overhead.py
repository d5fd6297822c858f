"""What the gateway adds to a request (part 2 of benchmarks/gateway.py; run that one).

A stub upstream (its own process: `python gateway_overhead.py --stub PORT`, aiohttp) answers
every completion with 16 fixed SSE chunks, written at once or paced 50 ms apart (a decode at
20 tokens/s), so the upstream costs next to nothing; the real `llm-gateway --static-models`
(its own process) sits in front of it; this process's aiohttp client keeps 1 or 200 streams
in flight, and times each stream's first chunk and its end. Direct and through-the-gateway
blocks alternate (the order flips every round); added latency = gateway − direct per round,
median over rounds. Also the gateway's own llm_gateway_added_latency_seconds (parse and pick,
before the upstream request is sent).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from aiohttp import web

CHUNKS = 16
CHUNK = (
    "data: "
    + json.dumps(
        {
            "id": "cmpl-stub",
            "object": "text_completion",
            "created": 1,
            "model": "stub",
            "choices": [{"index": 0, "text": " word", "finish_reason": None}],
        }
    )
    + "\n\n"
).encode()
METRICS = b"vllm:num_requests_waiting 0\nvllm:num_requests_running 0\n"
# (streams in flight, ms between chunks): chunks at once (the most work per second for the
# gateway: a closed loop that saturates the CPU), and paced like a decode at 20 tokens/s (200
# streams in flight without saturating it).
LEVELS = ((1, 0.0), (200, 0.0), (200, 50.0))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _complete(request: web.Request) -> web.StreamResponse:
    pace = float((await request.json()).get("pace_ms", 0)) / 1000
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for index in range(CHUNKS):
        if pace and index:
            await asyncio.sleep(pace)
        await response.write(CHUNK)
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(body=METRICS, content_type="text/plain")


def serve_stub(port: int) -> None:
    app = web.Application()
    app.router.add_post("/v1/completions", _complete)
    app.router.add_get("/metrics", _metrics)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def _wait_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url}: exited {process.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{url}: not up in 60 s")


async def _stream(session: aiohttp.ClientSession, base: str, pace_ms: float) -> tuple[float, float]:
    body = {"model": "stub", "prompt": "The same short prompt for every request.",
            "stream": True, "pace_ms": pace_ms}  # fmt: skip
    started = time.perf_counter()
    first = None
    async with session.post(base + "/v1/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.content:
            if first is None and line.startswith(b"data: {"):
                first = time.perf_counter() - started
    if first is None:
        raise RuntimeError("no chunk")
    return first, time.perf_counter() - started


async def _block(base: str, concurrency: int, requests: int, pace_ms: float) -> list[float]:
    """`concurrency` workers, each starting at a random moment within one stream's length (no
    synchronized waves), each sending requests back to back; a worker's first request (its
    connection's set-up) is not counted: the steady state of `concurrency` streams in flight."""
    connector = aiohttp.TCPConnector(limit=0)
    firsts: list[float] = []
    per_worker = -(-requests // concurrency)
    stagger = pace_ms * (CHUNKS - 1) / 1000

    async def worker(session: aiohttp.ClientSession) -> None:
        await asyncio.sleep(random.uniform(0, stagger))
        for index in range(per_worker + 1):
            first, _ = await _stream(session, base, pace_ms)
            if index:
                firsts.append(first)

    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return firsts


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered) * 1000, 3), "p99_ms": round(p99 * 1000, 3)}


def _own_histogram(gateway: str) -> dict[str, float]:
    """p50/p99 of llm_gateway_added_latency_seconds, as bucket upper bounds (ms)."""
    buckets: list[tuple[float, float]] = []
    for line in httpx.get(gateway + "/metrics", timeout=10).text.splitlines():
        if line.startswith("llm_gateway_added_latency_seconds_bucket"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(bound), float(line.rsplit(" ", 1)[1])))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0.0

    def quantile(q: float) -> float:
        return next((b * 1000 for b, count in buckets if count >= q * total), float("inf"))

    return {"count": total, "p50_ms_at_most": quantile(0.5), "p99_ms_at_most": quantile(0.99)}


def run(quick: bool, workdir: Path) -> dict[str, Any]:
    stub_port, gateway_port = free_port(), free_port()
    stub_url, gateway_url = f"http://127.0.0.1:{stub_port}", f"http://127.0.0.1:{gateway_port}"
    models = workdir / "static-models.yaml"
    models.write_text(f"stub:\n  - {stub_url}\n")
    stub = subprocess.Popen([sys.executable, __file__, "--stub", str(stub_port)])
    gateway = subprocess.Popen(
        [sys.executable, "-m", "llm_gateway", "--static-models", str(models),
         "--host", "127.0.0.1", "--port", str(gateway_port), "--log-level", "warning"],
        stdout=(workdir / "gateway.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    rounds = 2 if quick else 5
    result: dict[str, Any] = {"chunks_per_stream": CHUNKS, "rounds": rounds, "levels": []}
    try:
        _wait_up(stub_url + "/metrics", stub)
        _wait_up(gateway_url + "/healthz", gateway)
        for concurrency, pace_ms in LEVELS:
            requests = (200 if quick else 1000) if concurrency > 1 else (50 if quick else 300)
            for base in (stub_url, gateway_url):  # warm up both
                asyncio.run(_block(base, concurrency, min(requests, 200), pace_ms))
            blocks = []
            for round_ in range(rounds):
                order = [("direct", stub_url), ("gateway", gateway_url)]
                for path, base in order[:: 1 if round_ % 2 == 0 else -1]:
                    cpu_before = _cpu_seconds(gateway.pid)
                    firsts = asyncio.run(_block(base, concurrency, requests, pace_ms))
                    cpu = _cpu_seconds(gateway.pid) - cpu_before
                    blocks.append({"round": round_, "path": path, **_percentiles(firsts),
                                   "gateway_cpu_ms_per_request": round(
                                       cpu * 1000 / (len(firsts) + concurrency), 3)})  # fmt: skip
            added = {}
            for key in ("p50_ms", "p99_ms"):
                per_round = [
                    next(b[key] for b in blocks if b["round"] == r and b["path"] == "gateway")
                    - next(b[key] for b in blocks if b["round"] == r and b["path"] == "direct")
                    for r in range(rounds)
                ]
                added[key] = round(statistics.median(per_round), 3)
            level = {"concurrency": concurrency, "pace_ms": pace_ms, "requests_per_block": requests,
                     "blocks": blocks, "added": added}  # fmt: skip
            print(json.dumps(level), flush=True)
            result["levels"].append(level)
        result["gateway_own_added_latency"] = _own_histogram(gateway_url)
    finally:
        for process in (gateway, stub):
            process.terminate()
            process.wait(30)
    return result


def markdown(result: dict[str, Any]) -> str:
    if not result:
        return "## Gateway overhead\n\nNot run."
    lines = [
        "## Gateway overhead (stub upstream)", "",
        f"Time to the first of {result['chunks_per_stream']} chunks, direct vs through "
        f"`llm-gateway`; added = gateway − direct per round, median of {result['rounds']} "
        "rounds. Goal: < 2 ms p50, < 10 ms p99 added at 200 concurrent streams.", "",
        "| streams | ms between chunks | direct p50 (ms) | gateway p50 (ms) | added p50 (ms) "
        "| direct p99 (ms) | gateway p99 (ms) | added p99 (ms) | gateway CPU per request (ms) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for level in result["levels"]:

        def med(path: str, key: str, blocks: list[dict[str, Any]] = level["blocks"]) -> float:
            return float(statistics.median(b[key] for b in blocks if b["path"] == path))

        lines.append(
            f"| {level['concurrency']} | {level['pace_ms']:g} | {med('direct', 'p50_ms'):.2f} | "
            f"{med('gateway', 'p50_ms'):.2f} | **{level['added']['p50_ms']:.2f}** | "
            f"{med('direct', 'p99_ms'):.2f} | {med('gateway', 'p99_ms'):.2f} | "
            f"**{level['added']['p99_ms']:.2f}** | "
            f"{med('gateway', 'gateway_cpu_ms_per_request'):.3f} |"
        )
    own = result["gateway_own_added_latency"]
    lines += [
        "", f"The gateway's own llm_gateway_added_latency_seconds over {own['count']:,.0f} "
        f"requests: p50 ≤ {own['p50_ms_at_most']} ms, p99 ≤ {own['p99_ms_at_most']} ms "
        "(bucket bounds).",
    ]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="the stub upstream of benchmarks/gateway.py")
    parser.add_argument("--stub", type=int, metavar="PORT")
    args = parser.parse_args()
    if args.stub:
        serve_stub(args.stub)
    else:
        print("part of benchmarks/gateway.py: run that one")
