"""CRDs of other projects, vendored unchanged under tests/support/crds/, for tests that need
the real schema (the API server then validates our rendered objects as a cluster would)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

CRDS = Path(__file__).resolve().parent / "crds"


def inference_pool_crd() -> dict[str, Any]:
    """InferencePool, Gateway API Inference Extension v1.6.0."""
    text = (CRDS / "inference.networking.k8s.io_inferencepools.yaml").read_text()
    crd: dict[str, Any] = yaml.safe_load(text)
    return crd
