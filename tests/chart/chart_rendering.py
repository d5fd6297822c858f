"""The chart rendered by the real Helm engine (helm-python-sdk: Helm's Go SDK through ctypes)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "llm-operator"
RELEASE = "llmops"
RELEASE_NAMESPACE = "llm-system"
OVERLAYS = ("values-gke.yaml", "values-eks.yaml")


@cache
def chart() -> helm.Chart:
    return helm.Chart.load(CHART)


def overlay(name: str) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART / name).read_text())
    return values


def render(values: dict[str, Any] | None = None) -> dict[str, str]:
    """Template path -> rendered text, as `helm template llmops charts/llm-operator` prints."""
    return chart().render(values or {}, name=RELEASE, namespace=RELEASE_NAMESPACE)


@cache
def _render_objects(values_json: str) -> tuple[dict[str, Any], ...]:
    out: list[dict[str, Any]] = []
    for path, text in sorted(render(json.loads(values_json)).items()):
        if path.endswith(".txt"):
            continue
        out += [doc for doc in yaml.safe_load_all(text) if doc]
    return tuple(out)


def render_objects(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every rendered Kubernetes object (copies: callers may mutate them)."""
    objects = _render_objects(json.dumps(values or {}, sort_keys=True))
    return json.loads(json.dumps(objects))


COMPONENT_LABEL = "app.kubernetes.io/component"


def of_component(objects: list[dict[str, Any]], component: str) -> list[dict[str, Any]]:
    """The objects of one part of the release: "operator" or "gateway"."""
    return [o for o in objects if o["metadata"].get("labels", {}).get(COMPONENT_LABEL) == component]
