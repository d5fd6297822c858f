"""int8 and int4 weights served end to end on CPU: real `llm-server` processes on loopback,
driven by the official `openai` client. Each server's greedy text equals what the engine
produces in-process with the same quantization; a directory written by `llm-server quantize`
is detected without flags and serves exactly what load-time quantization serves; /metrics and
the startup log say which quantization is active."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families
from running_server import SERVED_NAME, SERVER_SRC, ServerProcess, run_server

from llm_server.engine.config import EngineConfig
from llm_server.engine_factory import build_engine
from llm_server.sampling_params import SamplingParams
from llm_server.tiny_model import build_tiny_model

PROMPT = "the kernel streams a batch of tokens to the"
MAX_TOKENS = 12


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Hidden size 128, so int4's default group of 128 divides every projection."""
    out = tmp_path_factory.mktemp("quant-serving")
    return build_tiny_model(out, hidden_size=128, intermediate_size=256)


def _in_process_text(model_dir: Path, quantization: str, group: int | None) -> str:
    config = EngineConfig(model=str(model_dir), device="cpu", num_kv_blocks=64,
                          quantization=quantization, quant_group_size=group)  # fmt: skip
    engine = build_engine(config)
    prompt = engine.tokenizer(PROMPT).input_ids
    params = SamplingParams(max_tokens=MAX_TOKENS, temperature=0.0, ignore_eos=True)
    tokens = [event.token_id for event in engine.generate({"r": prompt}, params)["r"]]
    return str(engine.tokenizer.decode(tokens))


def _complete(server: ServerProcess) -> str:
    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0)
    response = client.completions.create(
        model=SERVED_NAME, prompt=PROMPT, max_tokens=MAX_TOKENS, temperature=0.0,
        extra_body={"ignore_eos": True},
    )  # fmt: skip
    assert response.usage is not None and response.usage.completion_tokens == MAX_TOKENS
    chat = client.chat.completions.create(
        model=SERVED_NAME, messages=[{"role": "user", "content": PROMPT}], max_tokens=8,
        temperature=0.0, stream=True, stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(chat)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 8
    return response.choices[0].text


def _info_labels(server: ServerProcess) -> dict[str, str]:
    text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        if family.name == "llm_server_info":
            return dict(family.samples[0].labels)
    raise AssertionError("no llm_server_info in /metrics")


@pytest.fixture(scope="module")
def pre_quantized_dir(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("pre-quantized") / "int4-g64"
    command = [sys.executable, "-m", "llm_server", "quantize", "--model", str(model_dir),
               "--quantization", "int4", "--group-size", "64", "--out", str(out)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(SERVER_SRC)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "int4-g64" in done.stdout
    yield out


@pytest.mark.parametrize(("quantization", "group"), [("int8", None), ("int4", None)])
def test_quantized_server_serves_what_the_engine_generates(
    model_dir: Path, server_log_dir: Path, quantization: str, group: int | None
) -> None:
    with run_server(model_dir, server_log_dir, "--quantization", quantization) as server:
        text = _complete(server)
        labels = _info_labels(server)
        log = server.log()
    assert text == _in_process_text(model_dir, quantization, group)
    assert labels["quantization"] == quantization
    assert labels["quant_group_size"] == ("32" if quantization == "int4" else "")
    label = "int4-g32" if quantization == "int4" else "int8"
    assert f"weights: quantization {label} (quantized at load time" in log


def test_pre_quantized_directory_is_detected_and_serves_the_same_text(
    model_dir: Path, pre_quantized_dir: Path, server_log_dir: Path
) -> None:
    with run_server(pre_quantized_dir, server_log_dir) as server:  # no --quantization flag
        text = _complete(server)
        labels = _info_labels(server)
        log = server.log()
    assert labels["quantization"] == "int4" and labels["quant_group_size"] == "64"
    assert "weights: quantization int4-g64 (pre-quantized checkpoint" in log
    assert text == _in_process_text(model_dir, "int4", 64)


def test_a_pre_quantized_checkpoint_fetched_by_uri_shows_its_quantization_in_metrics(
    model_dir: Path,
    pre_quantized_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An hf:// checkpoint is only on disk once the server fetched it: the startup flags said
    nothing, so llm_server_info must follow what the downloaded weights hold."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--acme--tiny-int4"
    shutil.copytree(pre_quantized_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with run_server("hf://acme/tiny-int4", tmp_path) as server:  # no --quantization flag
        text = _complete(server)
        labels = _info_labels(server)
    assert labels["quantization"] == "int4" and labels["quant_group_size"] == "64"
    assert text == _in_process_text(model_dir, "int4", 64)


def test_a_mismatched_quantization_exits_2_naming_the_flag(pre_quantized_dir: Path) -> None:
    command = [sys.executable, "-m", "llm_server", "--model", str(pre_quantized_dir),
               "--quantization", "int8", "--device", "cpu"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(SERVER_SRC)})  # fmt: skip
    assert done.returncode == 2
    assert "--quantization" in done.stderr and "pre-quantized int4-g64" in done.stderr
