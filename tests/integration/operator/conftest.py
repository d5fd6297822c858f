"""Fixtures for the operator integration tests; the harness is in operator_harness.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from operator_harness import ApiServer, Cluster, point_kubeconfig_at


@pytest.fixture
def kmock_options() -> dict[str, Any]:
    """Use ApiServer for the `kmock` fixture of KMock's pytest plugin."""
    return {"cls": ApiServer}


@pytest.fixture
async def cluster(kmock: ApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    kmock.declare_resources()
    point_kubeconfig_at(kmock, tmp_path, monkeypatch)
    return Cluster(kmock)
