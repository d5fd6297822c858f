"""Which requests may use the response cache, and what identifies their response.

Only requests whose output cannot differ between runs qualify: greedy ones (temperature 0)
and ones that bring their own seed. The key is a SHA-256 over a canonical JSON of everything
that shapes the response bytes: the model's identity, the endpoint, the served name echoed
back, the tokenized prompt(s), the resolved max_tokens and every other request field except
the few known not to matter (see the handlers). New request fields are therefore part of the
key by default: an unknown field can cost a hit, never return a wrong answer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def is_deterministic(temperature: float, seed: int | None) -> bool:
    return temperature == 0.0 or seed is not None


def response_cache_key(fields: Mapping[str, Any]) -> bytes:
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).digest()


def model_revision(model_dir: str | Path) -> str:
    """A fingerprint of a checkpoint directory: its small JSON files (config, tokenizer,
    generation config) by content, its weight files by name, size and modification time,
    so a changed checkpoint changes every key without reading gigabytes of weights."""
    path = Path(model_dir)
    digest = hashlib.sha256(str(path.resolve()).encode())
    if path.is_file():  # a single-file checkpoint (GGUF)
        stat = path.stat()
        digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    if path.is_dir():
        for file in sorted(path.iterdir()):
            if not file.is_file():
                continue
            digest.update(file.name.encode() + b"\0")
            if file.suffix == ".json" or file.name.startswith("tokenizer"):
                digest.update(file.read_bytes())
            elif file.suffix in WEIGHT_SUFFIXES:
                stat = file.stat()
                digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:32]
