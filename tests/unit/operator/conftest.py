from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))

BASE_MANIFEST: dict[str, Any] = {
    "apiVersion": "inference.llmops.dev/v1alpha1",
    "kind": "LLMDeployment",
    "metadata": {"name": "chat", "namespace": "default"},
    "spec": {
        "model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct", "maxContextLength": 8192},
        "optimization": {"quantization": "int8"},
        "accelerator": {"type": "L4", "fallbacks": [{"type": "A10G"}]},
        "replicas": {"min": 1, "max": 4},
        "autoscaling": {"budget": {"maxDollarsPerHour": 5}},
    },
}


def base_manifest() -> dict[str, Any]:
    return copy.deepcopy(BASE_MANIFEST)


def load_example(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    return doc


@pytest.fixture
def manifest() -> dict[str, Any]:
    return base_manifest()
