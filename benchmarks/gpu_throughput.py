"""Offline throughput on a GPU: llm-server's engine against transformers' continuous batching.

Protocol (nano-vllm's benchmark): REQUESTS requests, each a prompt of random token ids whose
length is uniform in [MIN_LEN, MAX_LEN] and an output length drawn the same way, ignore_eos
(every request generates exactly its output length), greedy, all submitted at once; the figure
is output tokens over wall time from the first submission to the last token, after a short
warm-up request. One fixed seed: both systems get the same requests.

Model: random weights of Llama-3-8B's shape (llm_server.random_checkpoint) in bf16, written
once as safetensors and loaded by each system from that file. Systems, one at a time with the
GPU to itself, in this order:
  - ours bf16 and ours int8 (LLMEngine.step in a loop; decode CUDA graphs on): max_num_seqs
    256 and max_num_batched_tokens 8192 (set once for a large GPU, not tuned on this
    workload), KV cache from 90 % of free memory (our default);
  - transformers' continuous batching (the manager behind `generate_batch`, used directly
    because it takes each request's output length) with its defaults, sized by its own
    WorkloadHints; attention `paged|sdpa` (the image has no flash-attn and no internet).
No other tuning for either. Each system gets --deadline-s; one that does not finish in time is
stopped and reported with the tokens it produced (its throughput is then an upper bound: it had
not finished).

Writes gpu_throughput.{json,md} under --out (docs/benchmarks by default). --smoke runs the
plumbing on a 2-layer model with 8 short requests on whatever device is there.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

# benchmarks/ (run as a script: the folder is on sys.path); gpu_device before llm_server
from gpu_device import DEVICE, ON_GPU, REPO, device_name, free_memory, synchronize
from llm_server.random_checkpoint import (
    LLAMA_SHAPES,
    parameter_count,
    write_random_llama,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # transformers must not look for kernels online
MAX_NUM_SEQS = 256
MAX_NUM_BATCHED_TOKENS = 8192
GOAL = 3.0  # issue 19: x transformers' continuous batching


def workload(requests: int, min_len: int, max_len: int, vocab: int) -> list[tuple[list[int], int]]:
    """(prompt token ids, output length) per request, from one fixed seed."""
    rng = random.Random(0)
    return [
        ([rng.randrange(vocab) for _ in range(rng.randint(min_len, max_len))],
         rng.randint(min_len, max_len))
        for _ in range(requests)
    ]  # fmt: skip


def run_ours(
    model_dir: Path, quantization: str, requests: list[tuple[list[int], int]], deadline_s: float
) -> dict[str, Any]:
    from llm_server.engine.config import EngineConfig
    from llm_server.engine_factory import build_engine
    from llm_server.sampling_params import SamplingParams

    loading = time.perf_counter()
    longest = max(len(p) + n for p, n in requests)
    config = EngineConfig(model=str(model_dir), dtype="bf16", device=DEVICE,
                          quantization=quantization, max_num_seqs=MAX_NUM_SEQS,
                          max_num_batched_tokens=MAX_NUM_BATCHED_TOKENS,
                          max_model_len=max(longest, 2048), max_waiting=len(requests),
                          enable_prefix_caching=False, cuda_graphs=ON_GPU)  # fmt: skip
    engine = build_engine(config)
    load_s = time.perf_counter() - loading
    engine.generate({"warmup": requests[0][0][:64]},
                    SamplingParams(max_tokens=16, temperature=0.0, ignore_eos=True))  # fmt: skip
    synchronize()
    started = time.perf_counter()
    for i, (prompt, output_len) in enumerate(requests):
        params = SamplingParams(max_tokens=output_len, temperature=0.0, ignore_eos=True)
        engine.add_request(str(i), prompt, params)
    tokens, finished = 0, 0
    while engine.has_unfinished() and time.perf_counter() - started < deadline_s:
        for event in engine.step():
            tokens += 1
            finished += event.finish_reason is not None
    synchronize()
    seconds = time.perf_counter() - started
    del engine
    free_memory()
    return {"load_s": load_s, "seconds": seconds, "output_tokens": tokens,
            "finished_requests": finished}  # fmt: skip


def run_transformers(
    model_dir: Path, requests: list[tuple[list[int], int]], deadline_s: float
) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM, GenerationConfig
    from transformers.generation.continuous_batching.utils import WorkloadHints

    loading = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.bfloat16, attn_implementation="sdpa"
    )
    model = model.to(DEVICE).eval()  # not device_map: that needs accelerate
    load_s = time.perf_counter() - loading
    longest_output = max(n for _, n in requests)
    generation = GenerationConfig(do_sample=False, max_new_tokens=longest_output,
                                  eos_token_id=-1, pad_token_id=0)  # fmt: skip
    longest_prompt = max(len(p) for p, _ in requests)
    hints = WorkloadHints(max_prompt_length=longest_prompt, max_generated_length=longest_output,
                          num_requests=len(requests))  # fmt: skip
    manager = model.init_continuous_batching(generation_config=generation, workload_hints=hints)
    manager.warmup()
    manager.start()
    tokens, finished, done = 0, 0, False
    try:
        manager.add_request(requests[0][0][:64], request_id="warmup", max_new_tokens=16,
                            eos_token_id=-1)  # fmt: skip
        _collect(manager, {"warmup"}, time.perf_counter() + 600)
        synchronize()
        started = time.perf_counter()
        for i, (prompt, output_len) in enumerate(requests):
            manager.add_request(prompt, request_id=str(i), max_new_tokens=output_len,
                                eos_token_id=-1)  # fmt: skip
        results = _collect(manager, {str(i) for i in range(len(requests))}, started + deadline_s)
        synchronize()
        seconds = time.perf_counter() - started
        tokens = sum(len(r.generated_tokens) for r in results.values())
        finished = len(results)
        done = finished == len(requests)
    finally:
        manager.stop(block=True, timeout=60, hard_stop=not done)
        manager.destroy()
        del model, manager
        free_memory()
    return {"load_s": load_s, "seconds": seconds, "output_tokens": tokens,
            "finished_requests": finished}  # fmt: skip


def _collect(manager: Any, wanted: set[str], deadline: float) -> dict[str, Any]:
    """Finished results by request id, until all of `wanted` are in or the deadline passes."""
    results: dict[str, Any] = {}
    while len(results) < len(wanted) and time.perf_counter() < deadline:
        result = manager.get_result(timeout=0.5)
        if result is not None and result.is_finished() and result.request_id in wanted:
            results[result.request_id] = result
        elif result is None and not manager.is_running():
            raise RuntimeError("transformers' generation thread stopped")
    return results


def write_report(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_throughput.json").write_text(json.dumps(report, indent=2) + "\n")
    w = report["workload"]
    lines = [
        "# Offline throughput on GPU: llm-server's engine vs transformers' continuous batching",
        "",
        f"{report['date']} · {report['gpu']} · torch {report['torch']} · transformers "
        f"{report['transformers']} · model: random {report['shape']} ({report['params_b']:.1f}B "
        "parameters, bf16 checkpoint)",
        "",
        f"Generated by `benchmarks/gpu_throughput.py` (protocol in its docstring): "
        f"{w['requests']} requests, prompt and output lengths uniform in "
        f"[{w['min_len']}, {w['max_len']}], {w['output_tokens']} output tokens in all, greedy, "
        "ignore_eos.",
        "",
        "| system | finished | output tokens | seconds | output tok/s | vs transformers | load s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    base = next((r for r in report["systems"] if r["system"] == "transformers"), None)
    for r in report["systems"]:
        if "error" in r:
            lines.append(f"| {r['system']} | failed: {r['error']} ||||||")
            continue
        rate = r["output_tokens"] / r["seconds"]
        ratio = "n/a"
        if base and "error" not in base and base["output_tokens"]:
            ratio = f"{rate / (base['output_tokens'] / base['seconds']):.2f}x"
        lines.append(f"| {r['system']} | {r['finished_requests']}/{w['requests']} | "
                     f"{r['output_tokens']} | {r['seconds']:.1f} | {rate:.0f} | {ratio} | "
                     f"{r['load_s']:.1f} |")  # fmt: skip
    lines += [
        "",
        "A system that did not finish all requests was stopped at its deadline: its tok/s "
        "counts only finished requests' tokens.",
        "",
        f"Goal (issue 19): ours >= {GOAL}x transformers' output tok/s in the same run.",
    ]
    (out / "gpu_throughput.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks")
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--min-len", type=int, default=128)
    parser.add_argument("--max-len", type=int, default=1024)
    parser.add_argument("--deadline-s", type=float, default=120.0,
                        help="wall time each system gets for the whole workload")  # fmt: skip
    parser.add_argument("--shape", default="llama-3-8b", choices=sorted(LLAMA_SHAPES))
    parser.add_argument("--systems", nargs="+", default=["ours-bf16", "transformers", "ours-int8"])
    parser.add_argument("--smoke", action="store_true",
                        help="2-layer model, 8 requests of 16-48 tokens, on whatever device is "
                        "there: checks the script, measures nothing")  # fmt: skip
    args = parser.parse_args(argv)
    if args.smoke:
        args.shape, args.requests, args.min_len, args.max_len = "smoke", 8, 16, 48
    elif not ON_GPU:
        print("gpu_throughput: no CUDA device; nothing measured (run it on a GPU, or --smoke)")
        return 0
    import transformers

    shape = LLAMA_SHAPES[args.shape]
    requests = workload(args.requests, args.min_len, args.max_len, shape["vocab_size"])
    runners: dict[str, Callable[[Path], dict[str, Any]]] = {
        "ours-bf16": lambda d: run_ours(d, "none", requests, args.deadline_s),
        "ours-int8": lambda d: run_ours(d, "int8", requests, args.deadline_s),
        "transformers": lambda d: run_transformers(d, requests, args.deadline_s),
    }
    report: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "gpu": device_name(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "shape": args.shape,
        "params_b": parameter_count(shape) / 1e9,
        "workload": {
            "requests": args.requests,
            "min_len": args.min_len,
            "max_len": args.max_len,
            "output_tokens": sum(n for _, n in requests),
            "seed": 0,
        },
        "settings": {
            "ours": {
                "max_num_seqs": MAX_NUM_SEQS,
                "max_num_batched_tokens": MAX_NUM_BATCHED_TOKENS,
            },
            "transformers": "defaults (WorkloadHints), attention paged|sdpa",
        },
        "deadline_s": args.deadline_s,
        "systems": [],
    }
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        model_dir = write_random_llama(Path(scratch) / args.shape, args.shape, device=DEVICE)
        report["checkpoint_write_s"] = time.perf_counter() - started
        for system in args.systems:
            print(f"gpu_throughput: {system} ...", flush=True)
            try:
                result = {"system": system, **runners[system](model_dir)}
            except Exception as exc:  # reported, and the next system still runs
                result = {"system": system, "error": f"{type(exc).__name__}: {exc}"[:300]}
                free_memory()
            print(f"gpu_throughput: {result}", flush=True)
            report["systems"].append(result)
            write_report(report, args.out)  # after each system: a timeout keeps what ran
    print(f"wrote {args.out / 'gpu_throughput.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
