"""API keys on a real llm-server process (loopback), with the official openai client: the key
from the environment (as the operator renders it from a Secret) and from a mounted file."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest
from running_server import SERVED_NAME, run_server


def test_openai_client_with_an_api_key(
    tiny_model_dir: Path,
    server_log_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLM_SERVER_API_KEY", "env-key")
    key_file = tmp_path / "api-key"
    key_file.write_text("file-key\n")
    with run_server(tiny_model_dir, server_log_dir, "--api-key-file", str(key_file)) as server:
        for key in ("env-key", "file-key"):
            client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=key, max_retries=0)
            completion = client.completions.create(model=SERVED_NAME, prompt="hi", max_tokens=2)
            assert completion.usage is not None and completion.usage.completion_tokens >= 1
        wrong = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="nope", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as raised:
            wrong.models.list()
        assert raised.value.status_code == 401 and raised.value.code == "invalid_api_key"
        for path in ("/health", "/ready", "/metrics"):
            assert httpx.get(f"{server.base_url}{path}", timeout=10).status_code == 200
        assert "file-key" not in server.log() and "env-key" not in server.log()
