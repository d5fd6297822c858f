"""A real Prometheus (Debian's package) scrapes a real llm-server and sees its traffic.

This is the path every dashboard, KEDA trigger and the operator's optional Prometheus source
use, so it is tested with the real scraper rather than a parser alone. `.ci/run` installs
Prometheus; without it this module fails with a message saying how to install it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from running_prometheus import running_prometheus
from running_server import SERVED_NAME, ServerProcess, run_server

SCRAPE_DEADLINE_S = 60


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, server_log_dir: Path) -> Iterator[ServerProcess]:
    with run_server(tiny_model_dir, server_log_dir) as running:
        yield running


@pytest.fixture(scope="module")
def prometheus(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    target = server.base_url.removeprefix("http://")
    job = {"job_name": "llm-server", "static_configs": [{"targets": [target]}]}
    with running_prometheus([job], tmp_path_factory.mktemp("prometheus")) as url:
        yield url


def _query(prometheus: str, expression: str) -> list[dict[str, Any]]:
    try:
        response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expression}, timeout=5)
    except httpx.HTTPError:
        return []
    if response.status_code != 200:
        return []
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


def _wait_for(prometheus: str, expression: str, accept: Any) -> list[dict[str, Any]]:
    deadline = time.monotonic() + SCRAPE_DEADLINE_S
    result: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        result = _query(prometheus, expression)
        if result and accept(result):
            return result
        time.sleep(0.5)
    raise AssertionError(f"{expression} never satisfied the check; last result: {result}")


def test_prometheus_scrapes_vllm_metrics_with_model_label(
    server: ServerProcess, prometheus: str
) -> None:
    up = _wait_for(prometheus, 'up{job="llm-server"}', lambda r: r[0]["value"][1] == "1")
    assert up[0]["metric"]["instance"] == server.base_url.removeprefix("http://")

    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused")
    for _ in range(3):
        client.completions.create(
            model=SERVED_NAME, prompt="hello", max_tokens=5, temperature=0,
            extra_body={"ignore_eos": True},
        )  # fmt: skip

    tokens = _wait_for(
        prometheus,
        "vllm:generation_tokens_total",
        lambda r: float(r[0]["value"][1]) >= 15,
    )
    assert tokens[0]["metric"]["model_name"] == SERVED_NAME
    assert float(tokens[0]["value"][1]) == 15.0  # 3 requests x 5 tokens, nothing lost or doubled
    ttft = _wait_for(
        prometheus,
        f'vllm:time_to_first_token_seconds_count{{model_name="{SERVED_NAME}"}}',
        lambda r: float(r[0]["value"][1]) >= 3,
    )
    assert float(ttft[0]["value"][1]) == 3.0
    # Gauges read at scrape time: nothing is running once the requests have returned.
    running = _query(prometheus, f'vllm:num_requests_running{{model_name="{SERVED_NAME}"}}')
    assert running and float(running[0]["value"][1]) == 0.0
