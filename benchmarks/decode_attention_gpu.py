"""Decode attention on a GPU: the per-head kernel (before issue 20) against the grouped kernel
(one program per sequence and KV head) without and with split-K, and PyTorch SDPA over
contiguous keys (no paging: a bound on what reading the same bytes costs elsewhere).

Shapes: bf16, head size 128, 8 KV heads with 32 query heads (GQA 4:1, Llama-3-8B) and 64
(8:1, Llama-3-70B); every sequence of a batch at the same context (512, 4k, 32k tokens),
batch 1 and 32; KV blocks of 16 tokens scattered in the cache (a shuffled block table).
Each candidate is checked against SDPA first (max abs error reported), then timed with
triton.testing.do_bench (median), in ROUNDS interleaved rounds whose median is reported.
KV GB/s = the keys and values a step must read (batch x context x KV heads x 128 x 2 B x 2)
over the time: the kernels' bound is the GPU's memory bandwidth.

Run by benchmarks/quant_gpu_decode.py (its report has the table); alone, it prints the table.
Interpreter timings (TRITON_INTERPRET=1 on CPU) mean nothing, so without CUDA it measures
nothing.
"""

from __future__ import annotations

import statistics
import sys
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

CONTEXTS = (512, 4096, 32768)
BATCHES = (1, 32)
GROUPS = (4, 8)  # query heads per KV head
KV_HEADS = 8
HEAD_DIM = 128
BLOCK_SIZE = 16
ROUNDS = 3


def _case(batch: int, context: int, group: int) -> dict[str, Any]:
    blocks_each = -(-context // BLOCK_SIZE)
    num_blocks = batch * blocks_each
    generator = torch.Generator(device="cuda").manual_seed(context + batch + group)
    cache_shape = (num_blocks, BLOCK_SIZE, KV_HEADS, HEAD_DIM)
    k_cache = torch.randn(cache_shape, device="cuda", dtype=torch.bfloat16, generator=generator)
    v_cache = torch.randn(cache_shape, device="cuda", dtype=torch.bfloat16, generator=generator)
    order = torch.randperm(num_blocks, device="cuda", generator=generator)
    tables = order.view(batch, blocks_each)
    q = torch.randn(batch, KV_HEADS * group, HEAD_DIM, device="cuda", dtype=torch.bfloat16,
                    generator=generator)  # fmt: skip
    lens = torch.full((batch,), context, device="cuda", dtype=torch.long)

    def contiguous(cache: torch.Tensor) -> torch.Tensor:  # [B, KVH, T, D], SDPA's layout
        keys = cache.index_select(0, tables.reshape(-1)).view(batch, -1, KV_HEADS, HEAD_DIM)
        return keys[:, :context].transpose(1, 2).contiguous()

    return {"q": q, "k_cache": k_cache, "v_cache": v_cache, "tables": tables, "lens": lens,
            "keys": contiguous(k_cache), "values": contiguous(v_cache)}  # fmt: skip


def _candidates(case: dict[str, Any]) -> dict[str, Any]:
    from llm_server.kernels.paged_decode_attention import paged_decode_attention
    from llm_server.kernels.paged_decode_attention_per_head import (
        paged_decode_attention_per_head,
    )

    paged = (case["q"], case["k_cache"], case["v_cache"], case["tables"], case["lens"])
    scale = HEAD_DIM**-0.5
    q4 = case["q"][:, :, None]  # [B, H, 1, D]
    return {
        "per-head (before)": partial(paged_decode_attention_per_head, *paged, scale),
        "grouped, no split": partial(paged_decode_attention, *paged, scale, num_splits=1),
        "grouped, split-K auto": partial(paged_decode_attention, *paged, scale),
        "SDPA, contiguous KV": lambda: F.scaled_dot_product_attention(
            q4, case["keys"], case["values"], scale=scale, enable_gqa=True
        )[:, :, 0],
    }


def attention_micro_benchmarks() -> list[dict[str, Any]]:
    import triton.testing

    from llm_server.kernels.paged_decode_attention import decode_splits

    processors = torch.cuda.get_device_properties(0).multi_processor_count
    rows = []
    for group in GROUPS:
        for batch in BATCHES:
            for context in CONTEXTS:
                case = _case(batch, context, group)
                candidates = _candidates(case)
                expected = candidates["SDPA, contiguous KV"]().float()
                times: dict[str, list[float]] = {name: [] for name in candidates}
                for _ in range(ROUNDS):  # interleaved: every candidate once per round
                    for name, fn in candidates.items():
                        ms = triton.testing.do_bench(fn, warmup=10, rep=60, return_mode="median")
                        times[name].append(ms)
                kv_bytes = batch * context * KV_HEADS * HEAD_DIM * 2 * 2
                splits = decode_splits(batch * KV_HEADS, case["tables"].shape[1] * BLOCK_SIZE,
                                       processors)  # fmt: skip
                base = statistics.median(times["per-head (before)"])
                for name, fn in candidates.items():
                    ms = statistics.median(times[name])
                    error = (fn().float() - expected).abs().max().item()
                    auto = name == "grouped, split-K auto"
                    rows.append({"group": group, "batch": batch, "context": context,
                                 "kernel": name, "us": ms * 1e3,
                                 "kv_gb_per_s": kv_bytes / (ms / 1e3) / 1e9,
                                 "speedup_vs_per_head": base / ms, "max_abs_error": error,
                                 "splits": splits if auto else None})  # fmt: skip
                del case, candidates
                torch.cuda.empty_cache()
    return rows


def attention_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| GQA | batch | context | kernel | µs | KV GB/s | vs per-head | max abs err |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        kernel = r["kernel"] + (f" ({r['splits']} splits)" if r["splits"] else "")
        lines.append(f"| {r['group']}:1 | {r['batch']} | {r['context']} | {kernel} | "
                     f"{r['us']:.1f} | {r['kv_gb_per_s']:.0f} | "
                     f"{r['speedup_vs_per_head']:.2f}x | {r['max_abs_error']:.2g} |")  # fmt: skip
    return lines


if __name__ == "__main__":
    if not torch.cuda.is_available():
        print("decode_attention_gpu: no CUDA device; nothing measured (run it on a GPU)")
        sys.exit(0)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server_image" / "src"))
    print("\n".join(attention_table(attention_micro_benchmarks())))
