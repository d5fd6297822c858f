"""The live-Prometheus test reuses the KMock operator harness (kopf against KMock) and the server
helpers (a real llm-server process) of the integration tests, fixtures included."""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
for helpers in (TESTS / "integration" / "operator", TESTS / "server" / "integration"):
    if str(helpers) not in sys.path:
        sys.path.insert(0, str(helpers))

# The `cluster` and `kmock_options` fixtures of the KMock harness.
from kmock_harness import cluster, kmock_options  # noqa: E402

__all__ = ["cluster", "kmock_options"]
