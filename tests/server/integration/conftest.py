"""Fixtures for tests that drive a real llm-server process."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def server_log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("llm-server-logs")
