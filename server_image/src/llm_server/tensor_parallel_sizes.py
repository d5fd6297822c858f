"""Which tensor-parallel sizes a model's shapes allow (no torch: the config checks this early)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

FLAG = "--tensor-parallel-size"


def model_shapes(hf_config: dict[str, Any]) -> dict[str, int]:
    """The dimensions tensor parallelism splits, read from a config.json's fields."""
    heads = int(hf_config["num_attention_heads"])
    return {
        "attention heads": heads,
        "KV heads": int(hf_config.get("num_key_value_heads") or heads),
        "intermediate size": int(hf_config["intermediate_size"]),
    }


def tensor_parallel_error(size: int, shapes: dict[str, int]) -> str | None:
    """None when every split dimension divides by `size`; else a message naming the flag."""
    if size < 1:
        return f"{FLAG} {size}: must be >= 1"
    bad = {name: value for name, value in shapes.items() if value % size}
    if not bad:
        return None
    common = math.gcd(*shapes.values())
    allowed = [n for n in range(1, common + 1) if common % n == 0]
    described = ", ".join(f"{name} ({value})" for name, value in shapes.items())
    return (
        f"{FLAG} {size}: the model's {described} must each be divisible by it; use one of {allowed}"
    )


def check_model_dir(size: int, model_dir: str | Path) -> str | None:
    """The check against a Hugging Face-format directory's config.json, before any loading."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    return tensor_parallel_error(size, model_shapes(config))
