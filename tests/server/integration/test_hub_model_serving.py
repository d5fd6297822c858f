"""`--model hf://ORG/NAME`: served from the Hugging Face cache (offline), or a clear exit."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import openai
import pytest
from running_server import SERVED_NAME, SERVER_SRC, run_server

COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_server_loads_an_hf_uri_from_the_hub_cache(
    offline_hub: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    root = offline_hub / "models--acme--tiny-chat"
    shutil.copytree(tiny_model_dir, root / "snapshots" / COMMIT)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(COMMIT)
    with run_server("hf://acme/tiny-chat", tmp_path) as server:
        client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused")
        reply = client.completions.create(model=SERVED_NAME, prompt="hello", max_tokens=4)
        assert reply.usage is not None and reply.usage.completion_tokens == 4


def test_server_exits_with_a_clear_line_when_the_model_cannot_be_fetched(
    offline_hub: Path, tmp_path: Path
) -> None:
    command = [sys.executable, "-m", "llm_server", "--model", "hf://acme/absent",
               "--device", "cpu", "--port", "0", "--cache-dir", str(tmp_path)]  # fmt: skip
    env = {"PYTHONPATH": str(SERVER_SRC), "HF_HUB_CACHE": str(offline_hub), "HF_HUB_OFFLINE": "1"}
    env["PATH"] = "/usr/bin:/bin"
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1
    assert "cannot load the model: hf://acme/absent: not in the local cache" in done.stderr
    assert "Traceback" not in done.stderr
