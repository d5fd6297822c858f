"""Fixtures for tests that drive a real llm-server process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="module")
def server_log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("llm-server-logs")


@pytest.fixture(scope="session")
def smollm2_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    """(openai client, transformers model) on SmolLM2's GGUF, shared by the sampling and
    logprobs tests so the model loads once per session (see logits_reference.py)."""
    from logits_reference import smollm2_openai_and_reference

    with smollm2_openai_and_reference(tmp_path_factory.mktemp("smollm2-api")) as both:
        yield both
