"""Flags -> frozen ServerConfig: validated once, with errors that name the flag."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from llm_server.cli import parse_config
from llm_server.config import TINY_RANDOM, ConfigError, ServerConfig


def test_defaults_and_engine_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    config = parse_config(["--model", str(tmp_path), "--dtype", "bfloat16", "--max-waiting", "8"])
    assert config.served_model_names == (tmp_path.name,)
    assert config.model_name == tmp_path.name and config.dtype == "bf16"
    engine = config.engine_config(str(tmp_path), cuda_available=False)
    assert (engine.dtype, engine.max_waiting, engine.chunked_prefill) == ("bf16", 8, True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.port = 1  # type: ignore[misc]


def test_auto_dtype_follows_the_device() -> None:
    config = parse_config(["--model", TINY_RANDOM, "--served-model-name", "a", "b"])
    assert config.served_model_names == ("a", "b")
    assert config.engine_config("x", cuda_available=False).dtype == "fp32"
    assert config.engine_config("x", cuda_available=True).dtype == "bf16"


@pytest.mark.parametrize(
    ("changes", "flag"),
    [
        ({"model": "/nonexistent"}, "--model"),
        ({"dtype": "int3"}, "--dtype"),
        ({"port": 70000}, "--port"),
        ({"max_waiting": 0}, "--max-waiting"),
        ({"drain_grace_seconds": -1.0}, "--drain-grace-seconds"),
        ({"quantization": "int5"}, "--quantization"),
        ({"device": "tpu"}, "--device"),
        ({"max_prompt_chars": 0}, "--max-prompt-chars"),
        ({"http_header_timeout_seconds": 0.0}, "--http-header-timeout-seconds"),
        ({"http_body_timeout_seconds": -1.0}, "--http-body-timeout-seconds"),
        ({"http_keep_alive_seconds": 0.0}, "--http-keep-alive-seconds"),
        ({"max_header_bytes": 0}, "--max-header-bytes"),
        ({"limit_concurrency": 0}, "--limit-concurrency"),
    ],
)
def test_invalid_settings_name_the_flag(changes: dict[str, object], flag: str) -> None:
    settings: dict[str, object] = {"model": TINY_RANDOM, **changes}
    with pytest.raises(ConfigError, match=flag):
        ServerConfig(**settings)  # type: ignore[arg-type]


def test_request_cost_and_slow_client_flags() -> None:
    config = parse_config([
        "--model", TINY_RANDOM, "--trust-request-chat-template", "--max-prompt-chars", "5000",
        "--http-header-timeout-seconds", "2.5", "--http-body-timeout-seconds", "30",
        "--http-keep-alive-seconds", "7", "--max-header-bytes", "32768",
        "--limit-concurrency", "900",
    ])  # fmt: skip
    assert config.trust_request_chat_template and config.max_prompt_chars == 5000
    assert (config.http_header_timeout_seconds, config.http_body_timeout_seconds) == (2.5, 30.0)
    assert (config.http_keep_alive_seconds, config.max_header_bytes) == (7.0, 32768)
    assert config.limit_concurrency == 900
    default = parse_config(["--model", TINY_RANDOM])
    assert not default.trust_request_chat_template and default.limit_concurrency is None


def test_cli_exits_2_on_a_bad_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_config(["--model", TINY_RANDOM, "--max-num-seqs", "0"])
    assert exited.value.code == 2
    assert "--max-num-seqs" in capsys.readouterr().err
