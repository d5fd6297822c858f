"""Schemathesis against a real llm-server's /openapi.json (issue 18, item 6): no 5xx, only
documented statuses, bodies that match the documented schemas. Derandomized, so CI runs the
same examples every time; `make bench` runs a longer, random search (benchmarks/openapi_fuzz.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openapi_fuzzing import fuzz, server_args
from running_server import ServerProcess, run_server

# Per operation and generation mode (positive, negative): about a minute on two busy cores.
MAX_EXAMPLES = 400


@pytest.fixture(scope="module")
def server(
    server_log_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    cache_dir = tmp_path_factory.mktemp("tiny-random")
    with run_server("tiny-random", server_log_dir, *server_args(cache_dir)) as process:
        yield process


def test_openapi_documents_real_responses_not_422(server: ServerProcess) -> None:
    document = httpx.get(f"{server.base_url}/openapi.json").json()
    completions = document["paths"]["/v1/completions"]["post"]["responses"]
    assert set(completions) == {"200", "400", "401", "404", "413", "429", "500", "503"}
    assert set(completions["200"]["content"]) == {"application/json", "text/event-stream"}
    assert "422" not in str(document["paths"])


def test_fuzzed_requests_get_documented_answers(server: ServerProcess) -> None:
    report = fuzz(server.base_url, MAX_EXAMPLES, derandomize=True)
    assert not report.failures, "\n\n".join(report.failures)
    assert report.total_examples > 0
    assert server.process.poll() is None  # still serving
