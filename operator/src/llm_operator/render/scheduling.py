"""Where pods may run: node affinity and tolerations for the accelerator and capacity type.

Spot labels and taints of the big clouds (docs/gpu-catalog.md):
  spot            required: (an accelerator label) AND (one cloud's spot label), ORed over both
  spot-preferred  required: an accelerator label; preferred: any spot label; tolerates spot taints
  on-demand       required: an accelerator label AND NOT any spot label (a label NotIn also
                  matches nodes without it), so Karpenter and mixed pools never pick spot
"""

from __future__ import annotations

from typing import Any

from llm_operator.resolve import Resolution

SPOT_NODE_LABELS: tuple[tuple[str, str], ...] = (
    ("cloud.google.com/gke-spot", "true"),  # GKE
    ("eks.amazonaws.com/capacityType", "SPOT"),  # EKS managed node groups
    ("karpenter.sh/capacity-type", "spot"),  # Karpenter
    ("kubernetes.azure.com/scalesetpriority", "spot"),  # AKS
)
# AKS taints spot pools; GKE spot pools are often tainted by their owners the same way.
SPOT_TAINTS: tuple[tuple[str, str], ...] = (
    ("kubernetes.azure.com/scalesetpriority", "spot"),
    ("cloud.google.com/gke-spot", "true"),
)
GPU_TAINT_KEY = "nvidia.com/gpu"  # GKE and the GPU Operator taint GPU nodes with it

Expression = dict[str, Any]


def _expression(key: str, operator: str, values: tuple[str, ...] | list[str]) -> Expression:
    return {"key": key, "operator": operator, "values": list(values)}


def affinity(resolution: Resolution) -> dict[str, Any] | None:
    accelerator = [[_expression(m.key, "In", m.values)] for m in resolution.node_alternatives] or [
        []
    ]
    spot = [_expression(key, "In", [value]) for key, value in SPOT_NODE_LABELS]
    if resolution.capacity == "spot":
        terms = [[*base, s] for base in accelerator for s in spot]
        preferred: list[dict[str, Any]] = []
    elif resolution.capacity == "spot-preferred":
        terms = [base for base in accelerator if base]
        preferred = [{"weight": 100, "preference": {"matchExpressions": [s]}} for s in spot]
    else:
        not_spot = [_expression(key, "NotIn", [value]) for key, value in SPOT_NODE_LABELS]
        terms = [base + not_spot for base in accelerator]
    node_affinity: dict[str, Any] = {}
    if terms:
        node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {
            "nodeSelectorTerms": [{"matchExpressions": t} for t in terms]
        }
    if resolution.capacity == "spot-preferred":
        node_affinity["preferredDuringSchedulingIgnoredDuringExecution"] = preferred
    return {"nodeAffinity": node_affinity} if node_affinity else None


def tolerations(resolution: Resolution) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if not resolution.accelerator.is_cpu:
        out.append({"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"})
    if resolution.capacity != "on-demand":
        out += [
            {"key": key, "operator": "Equal", "value": value, "effect": "NoSchedule"}
            for key, value in SPOT_TAINTS
        ]
    return out
