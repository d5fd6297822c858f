"""The live-Prometheus test reuses the operator harness (kopf against KMock) and the server
helpers (a real llm-server process) of the integration tests, fixtures included."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
for helpers in (TESTS / "integration" / "operator", TESTS / "server" / "integration"):
    if str(helpers) not in sys.path:
        sys.path.insert(0, str(helpers))

# The `cluster` and `kmock_options` fixtures, from the operator tests' own conftest.
_spec = importlib.util.spec_from_file_location(
    "operator_integration_fixtures", TESTS / "integration" / "operator" / "conftest.py"
)
assert _spec is not None and _spec.loader is not None
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)
cluster = _fixtures.cluster
kmock_options = _fixtures.kmock_options
