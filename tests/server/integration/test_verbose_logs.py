"""Issue 18, item 11: a real llm-server at its most verbose (`--log-level trace`: uvicorn's
access log and ASGI message log, every DEBUG logger) never writes a request body, a prompt, a
completion or an API key to its log: uvicorn logs bodies as `<N bytes>`, the app logs none."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from running_server import SERVED_NAME, run_server

PROMPT_MARK = "PROMPT-MARK-7f3a"
KEY = "sk-verbose-key-9c1e"


@pytest.mark.parametrize("level", ["debug", "trace"])
def test_verbose_server_logs_no_bodies_or_keys(
    tiny_model_dir: Path, server_log_dir: Path, monkeypatch: pytest.MonkeyPatch, level: str
) -> None:
    monkeypatch.setenv("LLM_SERVER_API_KEY", KEY)
    with run_server(tiny_model_dir, server_log_dir, "--log-level", level) as server:
        headers = {"Authorization": f"Bearer {KEY}"}
        url = f"{server.base_url}/v1"
        chat = {"model": SERVED_NAME, "messages": [{"role": "user", "content": PROMPT_MARK * 20}],
                "max_tokens": 3}  # fmt: skip
        answer = httpx.post(f"{url}/chat/completions", json=chat, headers=headers, timeout=60)
        assert answer.status_code == 200
        completion = answer.json()["choices"][0]["message"]["content"]
        stream = {"model": SERVED_NAME, "prompt": PROMPT_MARK, "max_tokens": 3, "stream": True}
        with httpx.stream("POST", f"{url}/completions", json=stream, headers=headers) as r:
            assert r.status_code == 200 and "[DONE]" in r.read().decode()
        bad = {"model": SERVED_NAME, "prompt": PROMPT_MARK, "max_tokens": "many"}
        assert httpx.post(f"{url}/completions", json=bad, headers=headers).status_code == 400
        wrong = {"Authorization": f"Bearer {KEY}-wrong"}
        assert httpx.post(f"{url}/completions", json=bad, headers=wrong).status_code == 401
        log = server.log()
    assert "POST /v1/chat/completions" in log  # the access log is on at this level
    assert PROMPT_MARK not in log and KEY not in log
    if len(completion.strip()) >= 8:
        assert completion.strip() not in log
