"""The server's ConfigMap data and the hash that rolls the pods when it changes."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import yaml

from llm_operator.resolve import Resolution

# libyaml's emitter when PyYAML has it (the same text; the pure-Python one is slow).
_Dumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def config_data(resolution: Resolution) -> dict[str, str]:
    """The ConfigMap's data: the server arguments and what was resolved, and why."""
    estimate = resolution.estimate
    resolved: dict[str, Any] = {
        "accelerator": {
            "type": resolution.accelerator.name,
            "count": resolution.count,
            "capacity": resolution.capacity,
            "fallbackIndex": resolution.fallback_index,
        },
        "quantization": {
            "requested": resolution.requested_quantization,
            "resolved": resolution.quantization,
        },
        "dtype": resolution.dtype,
        "kvCacheDtype": resolution.kv_cache_dtype,
        "memoryGiB": None
        if estimate is None
        else {
            "modelShape": estimate.shape.name,
            "weights": round(estimate.weights_gib, 2),
            "kvCachePerSequence": round(estimate.kv_cache_per_sequence_gib, 2),
            "overhead": round(estimate.overhead_gib, 2),
            "required": round(estimate.required_gib, 2),
            "available": None
            if estimate.available_gib is None
            else round(estimate.available_gib, 2),
            "fullLengthSequences": estimate.full_length_sequences,
        },
        "notes": list(resolution.notes),
    }
    return {
        "server-args.json": json.dumps(list(resolution.server_args), indent=2) + "\n",
        "resolution.yaml": yaml.dump(resolved, Dumper=_Dumper, sort_keys=False),
    }


def config_hash(data: dict[str, str], args: tuple[str, ...]) -> str:
    """sha256 of the server config and arguments: the pod annotation that rolls the pods."""
    text = json.dumps({"data": data, "args": list(args)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()
