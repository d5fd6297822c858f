"""The LLMDeployment the real-API-server tests start from: an 8B model on one L4."""

from __future__ import annotations

from typing import Any

API = "inference.llmops.dev/v1alpha1"
MODEL = {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct", "parameterCount": "8B"}


def llmd_manifest(namespace: str, name: str = "chat", **spec: Any) -> dict[str, Any]:
    """The base manifest; `spec` keys replace the base's (e.g. accelerator=..., server=...)."""
    return {
        "apiVersion": API,
        "kind": "LLMDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"model": dict(MODEL), "accelerator": {"type": "L4"}, **spec},
    }
