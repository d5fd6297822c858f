"""LLMTenant manifests shared by the unit tests (pydantic) and the real-API-server tests (the
generated CRD): both layers must accept the good ones and refuse the bad ones, naming the field.
"""

from __future__ import annotations

from typing import Any

API_VERSION = "inference.llmops.dev/v1alpha1"


def tenant(name: str = "team-a", namespace: str | None = None, **spec: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": API_VERSION, "kind": "LLMTenant", "metadata": metadata, "spec": spec}


GOOD: list[tuple[str, dict[str, Any]]] = [
    ("empty-spec", tenant()),
    ("models", tenant(models=["chat", "Qwen/Qwen2.5-7B-Instruct"])),
    ("limits", tenant(limits={"requestsPerMinute": 600, "tokensPerMinute": 200000})),
    ("budget-string", tenant(budget={"dollars": "25", "period": "day"})),
    ("budget-cents", tenant(budget={"dollars": "12.50", "period": "month"})),
    ("budget-number", tenant(budget={"dollars": 300, "period": "month"})),
    ("budget-small", tenant(budget={"dollars": "0.01", "period": "day"})),
    ("weight-priority", tenant(weight=1000, priority="low")),
    ("long-name", tenant(name="t" * 63)),
]

# (id, manifest, a field path the refusal must name)
BAD: list[tuple[str, dict[str, Any], str]] = [
    ("weight-0", tenant(weight=0), "weight"),
    ("weight-1001", tenant(weight=1001), "weight"),
    ("priority-urgent", tenant(priority="urgent"), "priority"),
    ("rpm-0", tenant(limits={"requestsPerMinute": 0}), "requestsPerMinute"),
    ("tpm-negative", tenant(limits={"tokensPerMinute": -5}), "tokensPerMinute"),
    ("limits-unknown", tenant(limits={"requestsPerHour": 5}), "requestsPerHour"),
    ("budget-zero", tenant(budget={"dollars": 0, "period": "day"}), "dollars"),
    ("budget-zero-string", tenant(budget={"dollars": "0.00", "period": "day"}), "dollars"),
    ("budget-negative", tenant(budget={"dollars": "-1", "period": "day"}), "dollars"),
    ("budget-exponent", tenant(budget={"dollars": "1e3", "period": "day"}), "dollars"),
    ("budget-not-a-number", tenant(budget={"dollars": "lots", "period": "day"}), "dollars"),
    ("budget-fraction-number", tenant(budget={"dollars": 12.5, "period": "day"}), "dollars"),
    ("budget-week", tenant(budget={"dollars": "5", "period": "week"}), "period"),
    ("budget-no-period", tenant(budget={"dollars": "5"}), "period"),
    ("budget-no-dollars", tenant(budget={"period": "day"}), "dollars"),
    ("models-repeated", tenant(models=["chat", "chat"]), "models"),
    ("models-bad-name", tenant(models=["-chat"]), "models"),
    ("spec-unknown", tenant(owner="team-b"), "owner"),
    ("name-64", tenant(name="t" * 64), "metadata.name"),
]
