"""What every benchmark report shares: the machine it ran on, and the model the server
benchmarks build (the same weights shape, so their figures can be compared)."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

# Random-weight Llama of about 31M parameters, used by the server benchmarks.
BENCH_LLAMA_SIZES = {
    "vocab_size": 8192,
    "hidden_size": 512,
    "intermediate_size": 1408,
    "num_hidden_layers": 8,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "max_position_embeddings": 2048,
    "initializer_range": 0.02,
}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(**versions: Any) -> dict[str, Any]:
    """CPU, cores, Python and platform, plus the versions the caller names."""
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        **versions,
        "platform": platform.platform(),
    }


def torch_machine() -> dict[str, Any]:
    """machine() for the server benchmarks: torch's threads and version, transformers'."""
    import torch
    import transformers

    return machine(
        torch_threads=torch.get_num_threads(),
        torch=torch.__version__,
        transformers=transformers.__version__,
    )


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank q-th percentile (q in 0..100); 0.0 for no values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else 0.0
