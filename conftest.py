"""Fixtures shared by tests/ and e2e/: the real Kubernetes control plane (tests/support)."""

pytest_plugins = ["kube_fixtures"]
