"""int4 on the real model (issue 24): an LLMDeployment asking int4 for SmolLM2 renders server
arguments without a group size; the server picks its default group (32: SmolLM2's hidden size
576 takes no group of 128), starts and answers as the unquantized model does (asymmetric g32
re-expresses the file's Q4_1 blocks exactly). A group size that cannot divide the layers is
one log line and exit 1, not a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import yaml
from logits_reference import smollm2_gguf
from prometheus_client.parser import text_string_to_metric_families
from running_server import SERVER_SRC, run_server

from llm_operator.api.spec import LLMDeploymentSpec
from llm_operator.catalog import default_catalog
from llm_operator.resolve import resolve
from llm_server.layers import cpu_quantized_matmul

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "cpu-smollm2.yaml"
SET_BY_THE_TEST = {"--model", "--port"}  # run_server gives the wheel's file and a free port


def _rendered_args(quantization: str) -> list[str]:
    manifest = yaml.safe_load(EXAMPLE.read_text())
    manifest["spec"]["optimization"]["quantization"] = quantization
    resolution = resolve(LLMDeploymentSpec.model_validate(manifest["spec"]), default_catalog())
    assert resolution.ok, resolution.problems
    assert resolution.quantization == quantization
    args, skip = [], False
    for arg in resolution.server_args:
        if skip:
            skip = False
        elif arg in SET_BY_THE_TEST:
            skip = True
        else:
            args.append(arg)
    return args


def _info_labels(base_url: str) -> dict[str, str]:
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        if family.name == "llm_server_info":
            return dict(family.samples[0].labels)
    raise AssertionError("no llm_server_info in /metrics")


def test_an_int4_llmdeployment_renders_starts_and_serves(tmp_path: Path) -> None:
    args = _rendered_args("int4")
    assert "--quant-group-size" not in args and args[args.index("--quantization") + 1] == "int4"
    with run_server(smollm2_gguf(), tmp_path, *args) as server:
        client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused")
        answer = client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            max_tokens=16,
            temperature=0,
        )
        labels = _info_labels(server.base_url)
        log = server.log()
    assert "Paris" in (answer.choices[0].message.content or "")
    assert (labels["quantization"], labels["quant_group_size"]) == ("int4", "32")
    assert "weights: quantization int4-g32 (quantized at load time" in log
    if cpu_quantized_matmul.NATIVE_BF16:  # the server runs on this machine's CPU
        assert "packed bf16 CPU kernels" in log and "120 of 120 int4 layers repacked" in log
        assert "saves memory, not time" not in log
    else:
        assert "int4-g32 on this CPU saves memory, not time" in log  # said once, at start-up


def test_a_group_size_that_cannot_divide_the_layers_is_one_line_and_exit_1() -> None:
    env = {**os.environ, "PYTHONPATH": str(SERVER_SRC)}
    command = [sys.executable, "-m", "llm_server", "--model", str(smollm2_gguf()),
               "--device", "cpu", "--quantization", "int4", "--quant-group-size", "128",
               "--port", "0"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    [line] = [row for row in done.stderr.splitlines() if "group size 128" in row]
    assert "does not divide" in line and "input size 576; use one of [32, 64]" in line
