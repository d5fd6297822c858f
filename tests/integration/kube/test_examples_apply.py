"""Issue 16, item 2: `kubectl apply -f crds/`, the chart's CRDs and `kubectl apply -f
examples/` succeed on the real API server, prerequisites included
(examples/00-prerequisites.yml: the namespaces `chat` and `inference`, the PVC `model-store`).

Files are applied as kubectl applies a directory: .json, .yaml and .yml files in name order,
each document in order, server-side apply (no operator runs here).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kube_client import Kube
from kube_fixtures import crd_manifests, install_crds

ROOT = Path(__file__).resolve().parents[3]
KUBECTL_EXTENSIONS = (".json", ".yaml", ".yml")


def kubectl_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix in KUBECTL_EXTENSIONS)


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.fixture
def example_namespaces(kube: Kube) -> Iterator[None]:
    yield
    for path in kubectl_files(ROOT / "examples"):
        for doc in documents(path):
            if doc["kind"] == "Namespace":
                kube.delete("v1", "Namespace", doc["metadata"]["name"])


def test_crds_and_the_charts_crds_apply(kube: Kube) -> None:
    install_crds(kube, ROOT / "crds")
    install_crds(kube, ROOT / "charts" / "llm-operator" / "files" / "crds")
    names = {c["metadata"]["name"] for c in crd_manifests(ROOT / "crds")}
    assert "llmdeployments.inference.llmops.dev" in names


def test_kubectl_apply_f_examples_works(kube: Kube, example_namespaces: None) -> None:
    applied: list[tuple[str, str, str]] = []
    for path in kubectl_files(ROOT / "examples"):
        for doc in documents(path):
            out = kube.apply(doc)
            applied.append((out["kind"], out["metadata"].get("namespace", ""),
                            out["metadata"]["name"]))  # fmt: skip
    kinds = [kind for kind, _, _ in applied]
    llmds = [p for p in kubectl_files(ROOT / "examples") if p.suffix == ".yaml"]
    assert kinds.count("LLMDeployment") == len(llmds) >= 3
    assert ("PersistentVolumeClaim", "inference", "model-store") in applied
    for kind, namespace, name in applied:
        if kind == "LLMDeployment":
            stored = kube.get("inference.llmops.dev/v1alpha1", kind, name, namespace)
            assert stored is not None and stored["spec"]["replicas"]["desired"] >= 0
