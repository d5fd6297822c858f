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
    ],
)
def test_invalid_settings_name_the_flag(changes: dict[str, object], flag: str) -> None:
    settings: dict[str, object] = {"model": TINY_RANDOM, **changes}
    with pytest.raises(ConfigError, match=flag):
        ServerConfig(**settings)  # type: ignore[arg-type]


def test_cli_exits_2_on_a_bad_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_config(["--model", TINY_RANDOM, "--max-num-seqs", "0"])
    assert exited.value.code == 2
    assert "--max-num-seqs" in capsys.readouterr().err
