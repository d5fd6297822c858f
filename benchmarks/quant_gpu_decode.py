"""Batch-1 decode speed of quantized weights on a GPU, against the memory-bandwidth roofline.

Batch-1 decode reads every weight once per token, so its ceiling is
    roofline tokens/s = measured copy bandwidth / bytes read per token,
with bandwidth measured in the same run (a device-to-device copy of 2 GiB, read + write
bytes, triton.testing.do_bench) and bytes per token = the resident weights minus the
embedding table (one row of it is read) plus the KV cache read at the measured context.

Model: a random-weight Llama with TinyLlama-1.1B's shape (22 layers, hidden 2048, MLP 5632,
32 heads, 4 KV heads, vocabulary 32000; 1.1B parameters; llm_server.random_checkpoint),
written as bf16 safetensors and loaded through llm-server's loader at bf16 (none), int8,
int4 (group 32) and fp8 (Ada/Hopper only). For each: tokens/s of the real engine
(LLMEngine.step, one request, greedy, ignore_eos) with its decode CUDA graphs (the default)
and without (--no-cuda-graphs), and of the model's decode forward alone replayed as a CUDA
graph (no Python or launch overhead), each as a fraction of the roofline.

Kernel micro-benchmarks: the fused dequantize-matmul kernels against bf16 cuBLAS
(torch.matmul with W.T) on the model's projection shapes, at 1, 16 and 256 rows; and decode
attention (benchmarks/decode_attention_gpu.py): the per-head kernel it replaced against the
grouped kernel without and with split-K, and SDPA, at contexts 512/4k/32k, batch 1/32, GQA
4:1 and 8:1. The new attention kernels and the engine's CUDA graphs have no GPU figures yet:
they come with the GPU validation issue (#19); CPU interpreter timings mean nothing.

Writes docs/benchmarks/quant_gpu_decode.{json,md} (or under --out). Without CUDA it prints
one line and exits 0; with --smoke it runs every step on a 2-layer model on whatever device
is there (benchmarks/gpu_suite.sh --smoke rehearses the GPU suite on a CPU that way).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch

# benchmarks/ (run as a script: the folder is on sys.path); gpu_device before llm_server
from decode_attention_gpu import (
    attention_micro_benchmarks,
    attention_table,
)
from gpu_device import DEVICE, ON_GPU, REPO, bench_ms, device_name, free_memory, synchronize
from llm_server.random_checkpoint import LLAMA_SHAPES, write_random_llama

PRECISIONS = ["none", "int8", "int4", "fp8"]
PROMPT_TOKENS = 128
DECODE_TOKENS = 256
MICRO_ROWS = (1, 16, 256)


def copy_bandwidth(nbytes: int) -> float:
    """Bytes/s of a device-to-device copy (each byte read once and written once)."""
    source = torch.empty(nbytes, dtype=torch.uint8, device=DEVICE)
    target = torch.empty_like(source)
    ms = bench_ms(lambda: target.copy_(source), warmup=50, rep=500)
    return 2 * source.numel() / (ms / 1e3)


def fp8_supported() -> bool:
    return ON_GPU and torch.cuda.get_device_capability() >= (8, 9)


def engine_decode(model_dir: Path, quantization: str, decode_tokens: int) -> dict[str, Any]:
    eager = engine_decode_run(model_dir, quantization, False, decode_tokens)
    if not ON_GPU:  # no graphs to capture
        return {**eager, "engine_eager_tokens_per_s": eager["engine_tokens_per_s"]}
    return {**engine_decode_run(model_dir, quantization, True, decode_tokens),
            "engine_eager_tokens_per_s": eager["engine_tokens_per_s"]}  # fmt: skip


def engine_decode_run(
    model_dir: Path, quantization: str, cuda_graphs: bool, decode_tokens: int
) -> dict[str, Any]:
    from llm_server.engine.config import EngineConfig
    from llm_server.engine_factory import build_engine
    from llm_server.models.loader import weight_bytes
    from llm_server.sampling_params import SamplingParams

    config = EngineConfig(model=str(model_dir), dtype="bf16", device=DEVICE, num_kv_blocks=256,
                          max_model_len=2048, quantization=quantization,
                          cuda_graphs=cuda_graphs)  # fmt: skip
    engine = build_engine(config)
    model = engine.runner.model
    prompt = list(range(10, 10 + PROMPT_TOKENS))
    params = SamplingParams(max_tokens=decode_tokens, temperature=0.0, ignore_eos=True)
    engine.generate({"warmup": prompt}, SamplingParams(max_tokens=16, temperature=0.0,
                                                       ignore_eos=True))  # fmt: skip
    engine.add_request("r", prompt, params)
    engine.step()  # the prefill and the first token
    synchronize()
    started, tokens = time.perf_counter(), 0
    while engine.has_unfinished():
        tokens += len(engine.step())
    synchronize()
    seconds = time.perf_counter() - started
    embedding = model.model.embed_tokens.weight
    kv_bytes = sum(2 * a.num_kv_heads * a.head_dim * a.k_cache.element_size()  # type: ignore[union-attr]
                   for a in model.attention_layers())  # fmt: skip
    context = PROMPT_TOKENS + decode_tokens // 2  # mean context over the decode
    read_per_token = weight_bytes(model) - embedding.nbytes + embedding.shape[1] * 2
    read_per_token += kv_bytes * context
    graph_tps = graph_decode(engine, context) if cuda_graphs else {}
    return {"engine_tokens_per_s": tokens / seconds, "bytes_per_token": read_per_token,
            "weight_bytes": weight_bytes(model), **graph_tps}  # fmt: skip


def graph_decode(engine: Any, context: int) -> dict[str, Any]:
    """Tokens/s of one decode forward + logits replayed as a CUDA graph (no host overhead)."""
    from llm_server.layers.attention import AttentionMetadata

    model = engine.runner.model
    blocks = -(-context // engine.config.block_size)
    tokens = torch.tensor([11], device="cuda")
    positions = torch.tensor([context - 1], device="cuda")
    meta = AttentionMetadata(
        slot_mapping=torch.tensor([context - 1], device="cuda"),
        num_decode_tokens=1,
        decode_block_tables=torch.arange(blocks, device="cuda")[None],
        decode_context_lens=torch.tensor([context], device="cuda"),
    )
    try:
        with torch.inference_mode():
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):
                    model.compute_logits(model(tokens, positions, meta))
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                model.compute_logits(model(tokens, positions, meta))
        ms = bench_ms(graph.replay, warmup=20, rep=300)
        return {"graph_tokens_per_s": 1e3 / ms}
    except Exception as exc:  # reported, not fatal: the engine figure stands on its own
        return {"graph_tokens_per_s": None, "graph_error": f"{type(exc).__name__}: {exc}"}


def micro_benchmarks(shape: dict[str, int], rows: tuple[int, ...]) -> list[dict[str, Any]]:
    from llm_server.kernels.channel_matmul import channel_matmul
    from llm_server.kernels.int4_matmul import int4_matmul
    from llm_server.quantization.quantize import quantize
    from llm_server.quantization.scheme import QuantScheme

    hidden, mlp = shape["hidden_size"], shape["intermediate_size"]
    kv = shape["num_key_value_heads"] * hidden // shape["num_attention_heads"]
    shapes = {"qkv": (hidden + 2 * kv, hidden), "o": (hidden, hidden),
              "gate_up": (2 * mlp, hidden), "down": (hidden, mlp)}  # fmt: skip
    rows_out = []
    for name, (n, k) in shapes.items():
        weight = torch.randn(n, k, device=DEVICE, dtype=torch.bfloat16) * 0.02
        int8 = quantize(weight, QuantScheme("int8"))
        int4_scheme = QuantScheme("int4")  # the server's default group
        int4 = quantize(weight, int4_scheme)
        fp8 = quantize(weight, QuantScheme("fp8")) if fp8_supported() else None
        for m in rows:
            x = torch.randn(m, k, device=DEVICE, dtype=torch.bfloat16)
            candidates = {
                "bf16 cuBLAS": (partial(torch.matmul, x, weight.T), weight.nbytes),
                "int8": (partial(channel_matmul, x, int8.data, int8.scale),
                         int8.data.nbytes + int8.scale.nbytes),
                int4_scheme.label: (partial(int4_matmul, x, int4.data, int4.scale,
                                            int4_scheme.group_size),
                                    int4.data.nbytes + int4.scale.nbytes),
            }  # fmt: skip
            if fp8 is not None:
                candidates["fp8"] = (partial(channel_matmul, x, fp8.data, fp8.scale),
                                     fp8.data.nbytes + fp8.scale.nbytes)  # fmt: skip
            base = None
            for label, (fn, nbytes) in candidates.items():
                ms = bench_ms(fn)
                base = base or ms
                rows_out.append({"layer": name, "n": n, "k": k, "rows": m, "kernel": label,
                                 "us": ms * 1e3, "weight_gb_per_s": nbytes / (ms / 1e3) / 1e9,
                                 "speedup_vs_bf16": base / ms})  # fmt: skip
    return rows_out


GOALS = {"none": 0.70, "int8": 1.6, "int4": 2.5}  # issue 19: of roofline; x bf16's tokens/s


def goal_lines(decode: list[dict[str, Any]], bandwidth_gb_per_s: float) -> list[str]:
    """Issue 19's goals against this run's figures: met, or missed by how much."""
    measured = {r["precision"]: r for r in decode if "skipped" not in r}
    lines = ["Goals (issue 19):"]
    if "none" in measured:
        bf16 = measured["none"]
        share = bf16["engine_tokens_per_s"] * bf16["bytes_per_token"] / (bandwidth_gb_per_s * 1e9)
        verdict = "met" if share >= GOALS["none"] else f"missed by {GOALS['none'] - share:.0%}"
        lines.append(f"- bf16 engine at {share:.0%} of the roofline (goal >= 70%): {verdict}")
        for precision in ("int8", "int4"):
            if precision in measured:
                ratio = measured[precision]["engine_tokens_per_s"] / bf16["engine_tokens_per_s"]
                goal = GOALS[precision]
                verdict = "met" if ratio >= goal else f"missed ({ratio / goal:.0%} of the goal)"
                lines.append(f"- {precision} at {ratio:.2f}x bf16 (goal >= {goal}x): {verdict}")
    return lines


def write_report(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "quant_gpu_decode.json").write_text(json.dumps(report, indent=2) + "\n")
    bw = report["copy_bandwidth_gb_per_s"]
    lines = [
        "# Quantized batch-1 decode on GPU",
        "",
        f"{report['date']} · {report['gpu']} · torch {report['torch']} · triton "
        f"{report['triton']} · measured copy bandwidth {bw:.0f} GB/s",
        "",
        "Generated by `benchmarks/quant_gpu_decode.py` (method in its docstring). Roofline = "
        "bandwidth / bytes read per token.",
        "",
        "| precision | weights (GiB) | roofline tok/s | engine tok/s | of roofline | "
        "engine eager tok/s | graphs vs eager | CUDA-graph forward tok/s | of roofline | "
        "engine vs bf16 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    bf16 = [r for r in report["decode"] if r["precision"] == "none" and "skipped" not in r]
    base = bf16[0]["engine_tokens_per_s"] if bf16 else None
    for r in report["decode"]:
        if "skipped" in r:
            lines.append(f"| {r['precision']} | skipped: {r['skipped']} ||||||||| ")
            continue
        roof = bw * 1e9 / r["bytes_per_token"]
        graph = r.get("graph_tokens_per_s")
        graph_cells = f"{graph:.0f} | {graph / roof:.0%}" if graph else "n/a | n/a"
        vs_bf16 = f"{r['engine_tokens_per_s'] / base:.2f}x" if base else "n/a"
        lines.append(
            f"| {r['precision']} | {r['weight_bytes'] / 2**30:.2f} | {roof:.0f} | "
            f"{r['engine_tokens_per_s']:.0f} | {r['engine_tokens_per_s'] / roof:.0%} | "
            f"{r['engine_eager_tokens_per_s']:.0f} | "
            f"{r['engine_tokens_per_s'] / r['engine_eager_tokens_per_s']:.2f}x | "
            f"{graph_cells} | {vs_bf16} |"
        )
    lines += ["", *goal_lines(report["decode"], bw)]
    lines += ["", "## Kernels against bf16 cuBLAS", "",
              "| layer (N x K) | rows | kernel | µs | weight GB/s | speedup vs bf16 |",
              "|---|---:|---|---:|---:|---:|"]  # fmt: skip
    for r in report["micro"]:
        lines.append(f"| {r['layer']} ({r['n']} x {r['k']}) | {r['rows']} | {r['kernel']} | "
                     f"{r['us']:.1f} | {r['weight_gb_per_s']:.0f} | "
                     f"{r['speedup_vs_bf16']:.2f}x |")  # fmt: skip
    if report["attention"]:
        lines += ["", "## Decode attention: per-head kernel, grouped, split-K, SDPA", "",
                  "Method in benchmarks/decode_attention_gpu.py; bf16, head size 128, 8 KV "
                  "heads.", "", *attention_table(report["attention"])]  # fmt: skip
    (out / "quant_gpu_decode.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks",
                        help="folder for quant_gpu_decode.{json,md}")  # fmt: skip
    parser.add_argument("--smoke", action="store_true",
                        help="a 2-layer model and tiny sizes on whatever device is there: "
                        "checks the script in seconds, measures nothing")  # fmt: skip
    args = parser.parse_args(argv)
    if not ON_GPU and not args.smoke:
        print("quant_gpu_decode: no CUDA device; nothing measured (run it on a GPU)")
        return 0
    import triton

    shape_name = "smoke" if args.smoke else "tinyllama-1.1b"
    decode_tokens = 8 if args.smoke else DECODE_TOKENS
    bandwidth = copy_bandwidth(2**20 if args.smoke else 2**30)
    report: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "gpu": device_name(),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "model_shape": {"name": shape_name, **LLAMA_SHAPES[shape_name]},
        "prompt_tokens": PROMPT_TOKENS,
        "decode_tokens": decode_tokens,
        "copy_bandwidth_gb_per_s": bandwidth / 1e9,
        "decode": [],
        "micro": [],
        "attention": [],
    }
    # Written after every step: a run cut short by its time limit keeps what it measured.
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = write_random_llama(Path(scratch) / shape_name, shape_name, device=DEVICE)
        for precision in PRECISIONS:
            row: dict[str, Any] = {"precision": precision}
            if precision == "fp8" and not fp8_supported():
                row["skipped"] = "needs compute capability 8.9+"
            else:
                try:
                    row |= engine_decode(model_dir, precision, decode_tokens)
                except Exception as exc:  # reported; the other precisions still run
                    row["skipped"] = f"failed: {type(exc).__name__}: {exc}"[:300]
            report["decode"].append(row)
            write_report(report, args.out)
            free_memory()
    rows = (1, 16) if args.smoke else MICRO_ROWS
    report["micro"] = micro_benchmarks(LLAMA_SHAPES[shape_name], rows)
    write_report(report, args.out)
    if ON_GPU:
        report["attention"] = attention_micro_benchmarks()
        write_report(report, args.out)
    print(f"wrote {args.out / 'quant_gpu_decode.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
