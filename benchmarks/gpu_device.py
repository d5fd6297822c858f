"""The device the GPU benchmarks run on, and how they time and sync it: one place for what
quant_gpu_decode.py and gpu_throughput.py (and their --smoke runs on a CPU) share.

Import it before llm_server: without CUDA, Triton's interpreter must be chosen before any
kernel is defined, and the project is used from the tree (the GPU image has no install).
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
ON_GPU = torch.cuda.is_available()
DEVICE = "cuda" if ON_GPU else "cpu"
if not ON_GPU:  # --smoke: Triton kernels run in its interpreter (chosen when they are defined)
    os.environ.setdefault("TRITON_INTERPRET", "1")
sys.path.insert(0, str(REPO / "server_image" / "src"))


def device_name() -> str:
    return torch.cuda.get_device_name() if ON_GPU else "none (--smoke on CPU)"


def synchronize() -> None:
    if ON_GPU:
        torch.cuda.synchronize()


def free_memory() -> None:
    """Give the GPU back what the last system held, before the next one sizes its caches."""
    gc.collect()
    if ON_GPU:
        torch.cuda.empty_cache()


def bench_ms(fn: Callable[[], Any], warmup: int = 25, rep: int = 200) -> float:
    """Milliseconds per call: Triton's do_bench (CUDA events, cache flushed) on a GPU; on CPU
    (--smoke only: the figure means nothing) the median of a few timed calls."""
    if ON_GPU:
        import triton.testing

        return float(triton.testing.do_bench(fn, warmup=warmup, rep=rep))
    times = []
    for _ in range(3):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times)
