"""The live-Prometheus test reuses the operator harness of the integration tests (kopf on
the real control plane) and the server helpers (Prometheus, free ports)."""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
for helpers in (TESTS / "integration" / "operator", TESTS / "server" / "integration"):
    if str(helpers) not in sys.path:
        sys.path.insert(0, str(helpers))

from operator_harness import operator_env  # noqa: E402

__all__ = ["operator_env"]
