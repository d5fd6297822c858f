"""Prefix caching on CPU: time to first token on a shared-system-prompt workload, cache on/off.

One random-weight Llama model (built by llm_server.tiny_model, the same sizes as
server_throughput.py but a 2,048-token context), fp32, fixed threads. Every request is a
1,024-token system prompt shared by all, then a suffix of its own (seeded random lengths),
greedy, ignore_eos. Both engine configurations run in the same process, one after the other,
on the same workload:

- sequential: one request at a time; TTFT is the prefill of one request (the clean signal).
  The two engines take turns request by request (off/on, then on/off), so load from other
  jobs on a shared machine falls on both alike;
- concurrent: a closed loop keeping `--concurrency` requests in flight, so prefills share
  steps with other requests' decodes, as on a busy server (one engine after the other).

TTFT is measured in the engine, from add_request to the step that returns the first token.
The cache starts cold for every configuration and mode (a fresh engine, warmed up on an
unrelated prompt). Also reported: the prefix-cache hit counters against the workload's
expected reuse, and whether greedy outputs are identical with and without the cache.
Writes docs/benchmarks/prefix_cache.{json,md}.

    python benchmarks/prefix_cache.py            # the full run (a few minutes)
    python benchmarks/prefix_cache.py --quick    # a small smoke run, written to /tmp
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

import bench_common  # benchmarks/bench_common.py (run as scripts: the folder is on sys.path)
from llm_server.engine.config import EngineConfig
from llm_server.engine.engine import LLMEngine
from llm_server.engine_factory import build_engine
from llm_server.sampling_params import SamplingParams
from llm_server.tiny_model import build_tiny_model

MODEL_SIZES = bench_common.BENCH_LLAMA_SIZES
BLOCK_SIZE = 16
VOCAB_SIZE = int(MODEL_SIZES["vocab_size"])
MAX_MODEL_LEN = int(MODEL_SIZES["max_position_embeddings"])


@dataclass
class RunResult:
    mode: str
    prefix_caching: bool
    requests: int
    ttft_p50_s: float
    ttft_p90_s: float
    ttft_mean_s: float
    wall_s: float
    prefix_cache_queries: int
    prefix_cache_hits: int
    hit_rate: float


def make_prompts(
    count: int, prefix_len: int, suffix_range: tuple[int, int], seed: int
) -> list[list[int]]:
    rng = random.Random(seed)
    vocab = VOCAB_SIZE
    system = [rng.randrange(3, vocab) for _ in range(prefix_len)]
    return [
        system + [rng.randrange(3, vocab) for _ in range(rng.randint(*suffix_range))]
        for _ in range(count)
    ]


def new_engine(model_dir: Path, prefix_caching: bool, token_budget: int) -> LLMEngine:
    engine = build_engine(
        EngineConfig(
            model=str(model_dir),
            device="cpu",
            block_size=BLOCK_SIZE,
            max_num_batched_tokens=token_budget,
            max_model_len=MAX_MODEL_LEN,
            enable_prefix_caching=prefix_caching,
        )
    )
    warm_up = {"warmup": [5] * 64}  # unrelated to the workload: the cache stays cold for it
    engine.generate(warm_up, SamplingParams(max_tokens=4, ignore_eos=True))
    engine.reset_counters()
    return engine


def run(
    engine: LLMEngine, prompts: list[list[int]], max_tokens: int, concurrency: int
) -> tuple[list[float], float, list[list[int]]]:
    """Closed loop with `concurrency` requests in flight: TTFTs, wall time, outputs."""
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
    submitted: dict[str, float] = {}
    ttfts: dict[str, float] = {}
    outputs: dict[str, list[int]] = {str(i): [] for i in range(len(prompts))}
    pending = list(range(len(prompts)))
    in_flight = 0
    start = time.perf_counter()
    while pending or engine.has_unfinished():
        while pending and in_flight < concurrency:
            index = pending.pop(0)
            submitted[str(index)] = time.perf_counter()
            engine.add_request(str(index), prompts[index], params)
            in_flight += 1
        events = engine.step()
        now = time.perf_counter()
        for event in events:
            outputs[event.request_id].append(event.token_id)
            ttfts.setdefault(event.request_id, now - submitted[event.request_id])
            if event.finish_reason is not None:
                in_flight -= 1
    wall = time.perf_counter() - start
    order = [str(i) for i in range(len(prompts))]
    return [ttfts[rid] for rid in order], wall, [outputs[rid] for rid in order]


def run_sequential_in_turns(
    engines: dict[bool, LLMEngine], prompts: list[list[int]], max_tokens: int
) -> dict[bool, tuple[list[float], float, list[list[int]]]]:
    """Each prompt alone on each engine, the engines alternating which goes first."""
    results: dict[bool, tuple[list[float], float, list[list[int]]]] = {
        on: ([], 0.0, []) for on in engines
    }
    for index, prompt in enumerate(prompts):
        for on in (False, True) if index % 2 == 0 else (True, False):
            ttfts, wall, outputs = run(engines[on], [prompt], max_tokens, concurrency=1)
            total_ttfts, total_wall, total_outputs = results[on]
            results[on] = (total_ttfts + ttfts, total_wall + wall, total_outputs + outputs)
    return results


def summarize(
    engine: LLMEngine, mode: str, on: bool, measured: tuple[list[float], float, list[list[int]]]
) -> RunResult:
    ttfts, wall, _ = measured
    stats = engine.stats()
    queries, hits = stats.prefix_cache_queries_total, stats.prefix_cache_hits_total
    return RunResult(
        mode=mode,
        prefix_caching=on,
        requests=len(ttfts),
        ttft_p50_s=bench_common.percentile(ttfts, 50),
        ttft_p90_s=bench_common.percentile(ttfts, 90),
        ttft_mean_s=sum(ttfts) / len(ttfts),
        wall_s=wall,
        prefix_cache_queries=queries,
        prefix_cache_hits=hits,
        hit_rate=hits / queries if queries else 0.0,
    )


def measure(
    model_dir: Path, prompts: list[list[int]], args: argparse.Namespace
) -> tuple[list[RunResult], dict[str, bool]]:
    """Both modes, cache off and on; and whether each mode's outputs were identical."""
    results, identical = [], {}
    engines = {on: new_engine(model_dir, on, args.token_budget) for on in (False, True)}
    sequential = run_sequential_in_turns(engines, prompts, args.max_tokens)
    for on in (False, True):
        results.append(summarize(engines[on], "sequential", on, sequential[on]))
    identical["sequential"] = sequential[False][2] == sequential[True][2]
    del engines
    outputs = {}
    for on in (False, True):
        engine = new_engine(model_dir, on, args.token_budget)
        measured = run(engine, prompts, args.max_tokens, args.concurrency)
        results.append(summarize(engine, "concurrent", on, measured))
        outputs[on] = measured[2]
    identical["concurrent"] = outputs[False] == outputs[True]
    return results, identical


def write_report(out_dir: Path, report: dict[str, Any]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "prefix_cache.json").write_text(json.dumps(report, indent=2) + "\n")
    work, mach = report["workload"], report["machine"]
    lines = [
        "# Prefix caching (CPU)",
        "",
        f"{report['date']} · {mach['cpu']} · {mach['cores']} cores, {mach['torch_threads']} "
        f"torch threads · torch {mach['torch']} · transformers {mach['transformers']}",
        "",
        f"Model: random-weight Llama, {report['model']['params_millions']:.1f}M parameters, "
        f"fp32, block size {BLOCK_SIZE}, max_model_len {MODEL_SIZES['max_position_embeddings']}.",
        f"Workload: {work['requests']} requests, each a {work['prefix_len']}-token shared "
        f"system prompt plus its own suffix of {work['suffix_range']} tokens, max_tokens "
        f"{work['max_tokens']}, greedy, seed {work['seed']}. Token budget "
        f"{work['token_budget']}; concurrent mode keeps {work['concurrency']} requests in "
        "flight. TTFT: add_request to the first token, in the engine.",
        "",
        "| mode | prefix cache | TTFT p50 ms | TTFT p90 ms | TTFT mean ms | wall s "
        "| hits / queries (tokens) | hit rate |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['mode']} | {'on' if r['prefix_caching'] else 'off'} "
            f"| {r['ttft_p50_s'] * 1e3:.1f} | {r['ttft_p90_s'] * 1e3:.1f} "
            f"| {r['ttft_mean_s'] * 1e3:.1f} | {r['wall_s']:.1f} "
            f"| {r['prefix_cache_hits']} / {r['prefix_cache_queries']} | {r['hit_rate']:.3f} |"
        )
    lines += [""]
    for mode, ratio in report["ttft_p50_speedup"].items():
        lines.append(f"- TTFT p50 speed-up with the cache, {mode}: **{ratio:.2f}×**.")
    expected = report["expected_sequential_hits"]
    lines += [
        f"- Expected hits, sequential: {expected['blocks']} full shared blocks × {BLOCK_SIZE} "
        f"tokens × ({work['requests']} − 1) requests = {expected['tokens']} tokens; "
        f"measured {expected['measured']}.",
        "- Greedy outputs identical with and without the cache: "
        + ", ".join(f"{mode} {same}" for mode, same in report["outputs_identical"].items())
        + ".",
        f"- 1-minute load average before / after: {report['load_average_1m']['before']:.2f} / "
        f"{report['load_average_1m']['after']:.2f} (a shared machine makes timings noisy).",
        "",
    ]
    (out_dir / "prefix_cache.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small run, written to /tmp")
    parser.add_argument("--requests", type=int, default=24)
    parser.add_argument("--prefix-len", type=int, default=1024)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--token-budget", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.requests, args.prefix_len, args.max_tokens = 6, 256, 4
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    suffix_range = (16, 128)
    out_dir = args.output_dir or (
        Path(tempfile.gettempdir()) / "bench"
        if args.quick
        else Path(__file__).resolve().parents[1] / "docs" / "benchmarks"
    )
    prompts = make_prompts(args.requests, args.prefix_len, suffix_range, args.seed)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = build_tiny_model(
            Path(scratch) / "model", family="llama", seed=args.seed, **MODEL_SIZES
        )
        params = sum(t.numel() for t in new_engine(model_dir, False, 64).runner.model.parameters())
        results, identical = measure(model_dir, prompts, args)
        for result in results:
            print(result, flush=True)
    by_key = {(r.mode, r.prefix_caching): r for r in results}
    speedups = {
        mode: by_key[(mode, False)].ttft_p50_s / by_key[(mode, True)].ttft_p50_s
        for mode in ("sequential", "concurrent")
    }
    shared_blocks = args.prefix_len // BLOCK_SIZE
    report = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": bench_common.torch_machine(),
        "model": {
            "family": "llama",
            "params_millions": params / 1e6,
            "sizes": MODEL_SIZES,
            "dtype": "fp32",
        },
        "workload": {
            "requests": args.requests,
            "prefix_len": args.prefix_len,
            "suffix_range": suffix_range,
            "max_tokens": args.max_tokens,
            "concurrency": args.concurrency,
            "token_budget": args.token_budget,
            "seed": args.seed,
        },
        "results": [asdict(r) for r in results],
        "ttft_p50_speedup": speedups,
        "expected_sequential_hits": {
            "blocks": shared_blocks,
            "tokens": shared_blocks * BLOCK_SIZE * (args.requests - 1),
            "measured": by_key[("sequential", True)].prefix_cache_hits,
        },
        "outputs_identical": identical,
        "load_average_1m": {"before": load_before[0], "after": os.getloadavg()[0]},
    }
    write_report(out_dir, report)
    print((out_dir / "prefix_cache.md").read_text())


if __name__ == "__main__":
    main()
