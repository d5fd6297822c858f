"""The servers under test, as real processes on loopback: ours (`llm-server`) and llama.cpp's
`llama-server` (built by scripts/build_llama_server.sh), and the F32 GGUF llama.cpp also serves.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build_llama_server.sh"
SERVED_NAME = "smollm2"  # what every server answers to as `model`
READY_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class ServerSpec:
    name: str  # a row of the report: "ours fp32", "llama.cpp Q4_1" ...
    argv: list[str]  # without --port, which is chosen when it starts
    notes: str = ""
    ready_path: str = "/health"  # 200 once the model is loaded (ours: /health is liveness)
    env: tuple[tuple[str, str], ...] = ()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build_llama_server() -> Path:
    """Runs the (cached) build; its last line of output is the binary's path."""
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return Path(out.strip().splitlines()[-1])


def llama_version(binary: Path) -> str:
    """The sdist's version and the llama.cpp build (number and commit) the script recorded."""
    version_file = binary.parents[1] / "VERSION"
    return " ".join(version_file.read_text().split()) if version_file.exists() else "unknown"


def f32_gguf(binary: Path, source: Path) -> Path | None:
    """source dequantized to F32 by llama-quantize (cached beside the build); None without it.
    The same values ours serves: our loader dequantizes the Q4_1 file to fp32 too."""
    quantize = binary.with_name("llama-quantize")
    target = binary.parents[2] / (source.stem.split(".")[0] + ".F32.gguf")
    if target.exists():
        return target
    if not quantize.exists():
        return None
    partial = target.with_suffix(".partial")
    subprocess.run(
        [str(quantize), "--allow-requantize", str(source), str(partial), "F32"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    partial.rename(target)
    return target


def ours(
    model: Path,
    quantization: str,
    max_seqs: int,
    max_model_len: int,
    token_budget: int,
    threads: int,
) -> ServerSpec:
    """Sized like llama-server: max_seqs sequences of up to max_model_len tokens in its KV."""
    blocks = max_seqs * -(-max_model_len // 16)  # 16-token blocks
    binary = shutil.which("llm-server", path=str(Path(sys.executable).parent)) or "llm-server"
    argv = [
        binary,
        "--model", str(model),
        "--served-model-name", SERVED_NAME,
        "--device", "cpu",
        "--quantization", quantization,
        "--max-num-seqs", str(max_seqs),
        "--max-num-batched-tokens", str(token_budget),
        "--max-model-len", str(max_model_len),
        "--num-kv-blocks", str(blocks),
        "--max-waiting", "10000",
        "--log-level", "warning",
    ]  # fmt: skip
    label = "fp32" if quantization == "none" else quantization
    notes = (
        f"max_num_seqs={max_seqs}, token budget {token_budget}, {blocks} KV blocks, "
        f"{threads} torch threads"
    )
    # torch takes its thread count from OMP_NUM_THREADS (llm-server has no flag for it).
    env = (("OMP_NUM_THREADS", str(threads)),)
    return ServerSpec(f"ours {label}", argv, notes, ready_path="/ready", env=env)


def llama(
    binary: Path, model: Path, label: str, parallel: int, ctx_per_slot: int, threads: int
) -> ServerSpec:
    argv = [
        str(binary),
        "--model", str(model),
        "--alias", SERVED_NAME,
        "--threads", str(threads),
        "--threads-batch", str(threads),
        "--parallel", str(parallel),
        "--cont-batching",
        "--ctx-size", str(parallel * ctx_per_slot),
        "--no-webui",
        "--log-disable",
    ]  # fmt: skip
    notes = f"--parallel {parallel}, -c {parallel * ctx_per_slot}, -t {threads}"
    return ServerSpec(f"llama.cpp {label}", argv, notes)


@dataclass(frozen=True)
class Running:
    spec: ServerSpec
    base_url: str
    pid: int


@contextlib.contextmanager
def serve(spec: ServerSpec, log_dir: Path) -> Iterator[Running]:
    """Starts the server, waits until its ready path answers 200; stops it (SIGTERM, SIGKILL)."""
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / (spec.name.replace(" ", "_") + ".log")
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [*spec.argv, "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=os.environ | dict(spec.env),
        )
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_ready(process, base_url + spec.ready_path, log_path)
        yield Running(spec, base_url, process.pid)
    finally:
        stop(process)


def wait_ready(process: subprocess.Popen[bytes], ready_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{log_path.stem} exited ({process.returncode}):\n{tail}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(ready_url, timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    stop(process)
    raise RuntimeError(f"{ready_url} not ready after {READY_TIMEOUT_S:.0f} s (log: {log_path})")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
