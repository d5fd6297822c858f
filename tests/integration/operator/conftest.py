"""Fixtures for the operator integration tests; the harness is in operator_harness.py."""

from __future__ import annotations

import pytest
from control_plane import ControlPlane


@pytest.fixture
def operator_env(control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator's clients (kopf's and k8s.py's) read $KUBECONFIG: the admin's here."""
    monkeypatch.setenv("KUBECONFIG", str(control_plane.kubeconfig))
