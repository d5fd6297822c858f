"""Fixtures for the operator integration tests; the harness is in operator_harness.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from operator_harness import RESOURCES, VERBS, ApiServer, Cluster


@pytest.fixture
def kmock_options() -> dict[str, Any]:
    """Use ApiServer for the `kmock` fixture of KMock's pytest plugin."""
    return {"cls": ApiServer}


@pytest.fixture
async def cluster(kmock: ApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    for resource, (kind, subresources) in RESOURCES.items():
        kmock.resources[resource] = kmock.ResourceInfo(
            kind=kind, namespaced=True, verbs=VERBS, subresources=subresources
        )
    # kopf waits for namespaces to be discoverable even when it watches named namespaces only.
    kmock.resources["v1/namespaces"] = kmock.ResourceInfo(
        kind="Namespace", namespaced=False, verbs=VERBS
    )
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": str(kmock.url).rstrip("/")}}],
        "users": [{"name": "test", "user": {"token": "test-token"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "test"}}],
        "current-context": "kmock",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("KUBECONFIG", str(path))
    return Cluster(kmock)
